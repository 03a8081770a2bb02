"""edgemeta: few-shot image recognition for the edge."""

from pkgutil import extend_path

# Run from a source checkout with a non-editable install (``python -m pytest`` puts the checkout
# first on sys.path), this folder holds only the CLI: extend_path lets ``edgemeta.runtime`` and
# the other layers come from the installed package beside it.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
