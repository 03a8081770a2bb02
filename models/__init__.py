"""Shipped models and example images (package data, read with importlib.resources)."""
