"""Fake ``metavision_core`` package (see ../README.md)."""
