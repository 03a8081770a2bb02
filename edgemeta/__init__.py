"""edgemeta: few-shot image recognition for the edge."""

__version__ = "0.1.0"
