"""Schema drift: how a bronze batch differs from its contract and from the batch before it.

Per source, ``schema_drift`` says what happens (ADR 0011):

* ``fail`` (default): an added or retyped column blocks the batch (tier 1).
* ``evolve``: added columns are carried into silver as they are (nullable; earlier rows read
  null) and appear in the catalog's silver views; gold is modelled and picks a column up
  when a builder selects it.
* ``rescue``: added columns are packed into one ``_rescued`` JSON column, so nothing is lost
  and the silver schema does not move.

Under every policy a missing non-nullable contract column blocks; under ``evolve`` and
``rescue`` a missing nullable one reads null. A retyped column (vs the previous batch) is
cast to its contract type under ``evolve``/``rescue``; values that do not parse are
quarantined as usual.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from lakehouse import storage
from lakehouse.config import EntityContract

RESCUED = "_rescued"


@dataclass(frozen=True)
class Drift:
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)  # column: (before, now)

    def __bool__(self) -> bool:
        return bool(self.added or self.missing or self.retyped)

    def describe(self, raw: pl.DataFrame | None = None) -> str:
        """Readable, with up to 5 example values of each added or retyped column."""
        def examples(col: str) -> str:
            if raw is None or col not in raw.columns:
                return ""
            values = raw[col].drop_nulls().unique(maintain_order=True).head(5).cast(pl.String).to_list()
            return f" (examples: {values})"

        parts = [f"added {c}{examples(c)}" for c in self.added]
        parts += [f"retyped {c}: {a} -> {b}{examples(c)}" for c, (a, b) in self.retyped.items()]
        parts += [f"missing {c}" for c in self.missing]
        return "; ".join(parts)

    def as_json(self) -> str:
        return json.dumps({"added": self.added, "missing": self.missing,
                           "retyped": {c: list(v) for c, v in self.retyped.items()}})


def _compatible(a: pl.DataType, b: pl.DataType) -> bool:
    # JSON pages infer Int64 or Float64 from the values they happen to hold: not a retype
    return a == b or a == pl.Null or b == pl.Null or (a.is_numeric() and b.is_numeric())


def detect(schema: Mapping[str, pl.DataType], contract: EntityContract,
           previous: Mapping[str, pl.DataType] | None) -> Drift:
    """Pure: compare a batch's columns with the contract and the previous batch's columns."""
    known = {c.bronze_name for c in contract.columns}
    data = [c for c in schema if not c.startswith("_")]
    retyped = {}
    if previous:
        retyped = {c: (str(previous[c]), str(schema[c])) for c in data
                   if c in previous and not _compatible(previous[c], schema[c])}
    return Drift(added=[c for c in data if c not in known],
                 missing=[c.bronze_name for c in contract.columns if c.bronze_name not in schema],
                 retyped=retyped)


def previous_schema(lake, table: str, run_date: date) -> dict[str, pl.DataType] | None:
    """Columns of the newest non-empty bronze batch of ``table`` before ``run_date`` (None: none).

    Empty batches are skipped: a source with nothing new may not type its columns.
    """
    earlier = sorted((p["ingest_date"] for p in storage.partitions(lake, "bronze", table)
                      if p.get("ingest_date", "9999") < run_date.isoformat()), reverse=True)
    for day in earlier[:7]:
        path = storage.data_file(lake, "bronze", table, {"ingest_date": day})
        if storage.path_exists(path) and storage.file_rows(path):
            return dict(storage.file_schema(path))
    return None


def extra_columns(raw: pl.DataFrame, drift: Drift, policy: str) -> pl.DataFrame:
    """Pure: what a batch carries into silver beyond its contract, by policy (``_row``-aligned)."""
    rows = raw.with_row_index("_row")
    if policy == "evolve" and drift.added:
        return rows.select("_row", *drift.added)
    if policy == "rescue" and drift.added:
        return rows.select("_row", pl.struct(drift.added).struct.json_encode().alias(RESCUED))
    return rows.select("_row")
