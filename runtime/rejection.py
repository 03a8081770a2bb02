"""The rejection rule: when a query is answered "unknown" instead of its nearest class.

One home for the decision, used by ``FewShotClassifier``, ``edgemeta eval --unknown``, the demo,
export's calibration and the baked classifier graph (whose ``accepted`` output computes the same
formula with the per-class limits as constants). Pure numpy; re-implementable in a few lines.

Rule version 1. A query's nearest prototype p_c belongs to class c, enrolled with k_c shots, at
squared distance d (the classifier's distance: squared Euclidean, on unit vectors for cosine
models), among C enrolled classes::

    accepted  <=>  d <= tau * ||p_c||^2 * (1 + beta / k_c) * C ** -gamma

The distance counts relative to the prototype's squared length: in a new domain or on new
alphabets every distance, genuine or not, grows with the embeddings' scale, and the prototype's
length follows it, so a calibration on a few held-out classes carries over (models/README.md,
"Unknown images"). beta (``shot_coef``) says how much farther genuine queries sit from a k-shot prototype than from a
many-shot one: the mean genuine distance behaves as a * (1 + beta / k) (a prototype made of k
noisy shots is off the class mean by a variance that shrinks as 1 / k). gamma (``class_coef``)
lowers the limit as classes are added: an unknown query's nearest of C prototypes comes closer the
more there are (fitted between 5 and 20 classes; far outside that range it extrapolates). tau is
the operating point:

- ``strict``:   the tau whose false-accept rate on the calibration classes was ``STRICT_FAR``;
- ``balanced``: the tau where false rejects and false accepts were equal on them (default);
- ``off``:      accept everything;
- a target false-accept rate ``far``: tau interpolated (linearly in log far) in ``far_table``;
- an explicit ``threshold``: d <= threshold, one squared distance for every class (the old rule).

The calibration (export/threshold.py) runs open-set episodes on classes the model never trained
on and records beta, both taus and the (far, tau) table in the model metadata's ``rejection``
section. Files whose metadata holds only the old ``threshold`` keep the old rule: d <= threshold
for ``strict`` and ``balanced``, and a ``far`` cannot be asked of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from .errors import EdgemetaError, ModelError

RULE_VERSION = 1
OPERATING_POINTS = ("strict", "balanced", "off")
DEFAULT_REJECT = "balanced"
STRICT_FAR = 0.01


@dataclass(frozen=True)
class RejectionRule:
    """The metadata ``rejection`` section: beta, gamma, the taus of the named operating points,
    and ``far_table`` ((far, tau) pairs, both increasing) for a target false-accept rate."""

    shot_coef: float
    class_coef: float
    strict: float
    balanced: float
    far_table: tuple[tuple[float, float], ...] = ()
    calibration: dict[str, Any] = field(default_factory=dict)
    version: int = RULE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "rule": "accept iff d <= tau * ||p||^2 * (1 + shot_coef / shots) * classes ** -class_coef",
            "shot_coef": self.shot_coef,
            "class_coef": self.class_coef,
            "tau": {"strict": self.strict, "balanced": self.balanced},
            "far_table": [list(p) for p in self.far_table],
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, d: Any) -> RejectionRule:
        """The section as read from a model file; ModelError when it is malformed or too new."""
        if not isinstance(d, dict):
            raise ModelError("the rejection section of the model metadata must be a JSON object")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelError("the rejection section of the model metadata has no integer version")
        if version > RULE_VERSION:
            raise ModelError(
                f"rejection rule version {version} is newer than this edgemeta supports "
                f"({RULE_VERSION}); upgrade edgemeta"
            )
        try:
            tau = d["tau"]
            table = tuple((float(f), float(t)) for f, t in d.get("far_table", []))
            rule = cls(
                float(d["shot_coef"]),
                float(d["class_coef"]),
                float(tau["strict"]),
                float(tau["balanced"]),
                table,
                dict(d.get("calibration") or {}),
                version,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"invalid rejection section in the model metadata: {e!r}") from None
        values = [rule.strict, rule.balanced, *(t for _, t in table)]
        coefs = (rule.shot_coef, rule.class_coef)
        if not (all(math.isfinite(c) and c >= 0 for c in coefs) and all(math.isfinite(v) and v > 0 for v in values)):
            raise ModelError("the rejection section needs shot_coef, class_coef >= 0 and positive finite taus")
        fars = [f for f, _ in table]
        if (
            not all(0 < f < 1 for f in fars)
            or any(b <= a for a, b in pairwise(fars))
            or any(b < a for a, b in pairwise(values[2:]))
        ):
            raise ModelError("the rejection far_table must be (far, tau) pairs with far in (0, 1), both increasing")
        return rule


@dataclass(frozen=True)
class OperatingPoint:
    """A rule made concrete: tau (None: accept everything), beta, gamma, and whether distances count
    relative to the prototype's squared length (False: d <= tau). ``name`` says where it came from."""

    tau: float | None
    shot_coef: float = 0.0
    class_coef: float = 0.0
    relative: bool = False
    name: str = "off"

    def limits(self, shots: Any, classes: int, sq_norms: Any) -> np.ndarray:
        """float64 [...]: the largest accepted squared distance to a prototype of squared length
        ``sq_norms`` float [...] made of ``shots`` int [...], among ``classes`` enrolled classes."""
        shape = np.broadcast(np.asarray(shots), np.asarray(sq_norms)).shape
        if self.tau is None:
            return np.full(shape, np.inf)
        if not self.relative:
            return np.full(shape, float(self.tau))
        scale = np.asarray(sq_norms, dtype=np.float64) * (
            1.0 + self.shot_coef / np.maximum(np.asarray(shots, np.float64), 1.0)
        )
        return self.tau * scale * float(max(classes, 1)) ** -self.class_coef

    def accepts(self, nearest: Any, shots: Any, classes: int, sq_norms: Any) -> np.ndarray:
        """bool [...]: per query, whether its nearest squared distance float [...] is within the limit
        of its nearest prototype (whose ``shots`` and ``sq_norms`` [...] are given per query)."""
        return np.asarray(nearest, dtype=np.float64) <= self.limits(shots, classes, sq_norms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reject": self.name,
            "tau": self.tau,
            "relative": self.relative,
            "shot_coef": self.shot_coef,
            "class_coef": self.class_coef,
        }


def check_reject(reject: str | None) -> str | None:
    if reject is not None and reject not in OPERATING_POINTS:
        raise EdgemetaError(f"--reject must be one of {', '.join(OPERATING_POINTS)}, got {reject!r}")
    return reject


def check_far(far: float | None) -> float | None:
    if far is not None and not (isinstance(far, (int, float)) and 0.0 < far < 1.0):
        raise EdgemetaError(f"--far must be a false-accept rate strictly between 0 and 1, got {far!r}")
    return None if far is None else float(far)


def operating_point(
    rule: RejectionRule | None,
    legacy_threshold: float | None,
    reject: str | None = None,
    far: float | None = None,
    threshold: float | None = None,
) -> OperatingPoint:
    """The operating point asked for (see the module docstring); EdgemetaError for an impossible ask."""
    check_reject(reject)
    check_far(far)
    if threshold is not None:
        if not (math.isfinite(threshold) and threshold > 0):
            raise EdgemetaError(f"--threshold must be a positive squared distance, got {threshold!r}")
        if far is not None or reject is not None:
            raise EdgemetaError("give one of --threshold, --reject and --far, not several")
        return OperatingPoint(float(threshold), name="threshold")
    if far is not None and reject is not None:
        raise EdgemetaError("give either --reject or --far, not both")
    if reject == "off":
        return OperatingPoint(None, name="off")
    if far is not None:
        if rule is None or not rule.far_table:
            raise EdgemetaError(
                "this model has no false-accept calibration (its metadata has no rejection "
                "section); use --reject or --threshold"
            )
        return OperatingPoint(tau_for_far(rule.far_table, far), rule.shot_coef, rule.class_coef, True, f"far={far:g}")
    name = reject or DEFAULT_REJECT
    if rule is not None:
        return OperatingPoint(getattr(rule, name), rule.shot_coef, rule.class_coef, True, name)
    return OperatingPoint(legacy_threshold, name=name if legacy_threshold is not None else "off")


def tau_for_far(table: tuple[tuple[float, float], ...], far: float) -> float:
    """tau for a target false-accept rate, interpolated linearly in log(far) between table rows."""
    fars = np.log([f for f, _ in table])
    if not table[0][0] <= far <= table[-1][0]:
        raise EdgemetaError(
            f"--far {far:g} is outside the model's calibration, which covers false-accept "
            f"rates {table[0][0]:g} to {table[-1][0]:g}"
        )
    return float(np.interp(math.log(far), fars, [t for _, t in table]))
