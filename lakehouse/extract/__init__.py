"""Extractors: one per kind of source, one interface.

An extractor knows how to read its source for a time window and yields
``Extracted`` chunks. It never decides where data goes: ``lakehouse.bronze``
binds extracted chunks to bronze tables.
"""

from lakehouse.extract.base import Extracted, Extractor, Window, build_extractor

__all__ = ["Extracted", "Extractor", "Window", "build_extractor"]
