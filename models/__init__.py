"""Shipped models and example images (package data; found beside this file, or through importlib.resources)."""
