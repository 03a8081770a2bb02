"""Commands that need an optional extra say so in one line, with the pip command that installs it.

The core install (numpy, onnxruntime, Pillow, click) runs enroll, classify, info, eval, bench and demo;
the extras in pyproject.toml add what the other commands import.
"""

from __future__ import annotations

import importlib

# extra -> the modules its commands import (the distributions in pyproject.toml's extra)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("torch",),
    "export": ("torch", "onnx"),
    "bake": ("onnx",),
}


def require_extra(what: str, extra: str) -> None:
    """Import the modules of ``extra`` now, so that a runtime-only install gets one line naming the
    pip command (an ``EdgemetaError``) instead of a traceback from deep inside ``what``."""
    from edgemeta.runtime.errors import EdgemetaError

    modules = EXTRA_MODULES[extra]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            broken = "" if isinstance(e, ModuleNotFoundError) and e.name == name else f" ({e})"
            raise EdgemetaError(
                f"{what} needs {' and '.join(modules)}: pip install 'edgemeta[{extra}]'{broken}"
            ) from None
