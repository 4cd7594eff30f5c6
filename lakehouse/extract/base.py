"""The extractor interface and the extraction window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import polars as pl

from lakehouse.config import DatabaseSource, FileSource, RestSource


@dataclass(frozen=True)
class Window:
    """Half-open interval ``[start, end)`` of source change times; ``start=None`` means all."""

    start: datetime | None
    end: datetime


@dataclass
class Extracted:
    """One chunk of raw rows for one entity, with a pointer back to where it came from.

    ``pointer`` is a column expression or literal naming the row's origin
    (``file.csv#row=12``, ``orders?order_id=O1``, ``/v1/x?page=3``).
    """

    entity: str
    frame: pl.DataFrame
    pointer: pl.Expr
    files: list[dict] = field(default_factory=list)  # files fully consumed by this chunk


class Extractor(Protocol):
    name: str

    def extract(self, window: Window) -> Iterator[Extracted]: ...


def build_extractor(source: DatabaseSource | RestSource | FileSource, **state) -> Extractor:
    """The extractor for a configured source; ``state`` carries e.g. the processed-file registry."""
    if isinstance(source, DatabaseSource):
        from lakehouse.extract.database import DatabaseExtractor

        return DatabaseExtractor(source)
    if isinstance(source, RestSource):
        from lakehouse.extract.rest import RestExtractor

        return RestExtractor(source)
    from lakehouse.extract.files import FileExtractor

    return FileExtractor(source, **state)
