"""Which model files may load which prototype stores.

A store holds the fingerprint (sha256) of the file that made it and, when that file's metadata
names its network and it may share stores (``ModelMetadata.store_network_id``: the network's
reference fp32 file, or an int8 file whose measured top-1 agreement with it reached
``MIN_STORE_AGREEMENT``), that network id. A model loads a store made by itself, by a file it
lists in ``equivalent_fingerprints``, or by any store-sharing file of its own network when it
shares stores too.
"""

from __future__ import annotations

import os

from .errors import StoreError
from .metadata import MIN_STORE_AGREEMENT, ModelMetadata
from .store import StoreContents


def check_store_fits(
    contents: StoreContents, meta: ModelMetadata, fingerprint: str, model_name: str, path: str | os.PathLike
) -> None:
    """Raise ``StoreError`` (saying to re-enroll) unless the store may be used with this model."""
    if contents.model_fingerprint in (fingerprint, *meta.equivalent_fingerprints):
        return
    mine = meta.store_network_id
    if contents.network_id and contents.network_id == mine:
        return
    if contents.network_id and contents.network_id == meta.network.get("id"):
        raise StoreError(
            f"store {path} was made with another file of network {contents.network_id[:12]}, and {model_name} agrees "
            f"with that network's reference file in only {100 * meta.store_agreement:.2f}% of validation decisions "
            f"(stores are shared from {100 * MIN_STORE_AGREEMENT:.1f}%): re-enroll the classes with {model_name}"
        )
    raise StoreError(
        f"store {path} was made with another model (fingerprint {contents.model_fingerprint[:12]}), not "
        f"{model_name} ({fingerprint[:12]}): re-enroll the classes with {model_name}, or use the model that made it"
    )


def describe_sharing(meta: ModelMetadata) -> str:
    """One line for ``edgemeta info``: which other files' prototype stores this file loads."""
    net = meta.network
    if not net.get("id"):
        return "no: stores load only with this file (and the earlier files it lists)"
    short = str(net["id"])[:12]
    if net.get("reference"):
        return f"yes: reference file of network {short}; its files that passed the agreement check share stores"
    verdict = "yes" if meta.store_network_id else "no: re-enroll"
    return (
        f"{verdict}: network {short}, top-1 agreement with its reference file {100 * meta.store_agreement:.2f}% "
        f"(shared from {100 * MIN_STORE_AGREEMENT:.1f}%)"
    )
