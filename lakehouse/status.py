"""``lakehouse status``: freshness, last write and quality per table, for a terminal.

Read from the lake itself (Parquet metadata and file times), so it works without
Airflow and without opening the DuckDB catalog.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from lakehouse import storage
from lakehouse.config import DomainConfig

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class TableStatus:
    layer: str
    table: str
    rows: int
    partitions: int
    latest_partition: date | None  # newest date-valued partition (business date)
    written_hours_ago: float  # age of the newest data file


def table_status(lake: Path, layer: str, table: str, now: float | None = None) -> TableStatus:
    files = list(storage.table_dir(lake, layer, table).glob(f"**/{storage.DATA_FILE}"))
    parts = storage.partitions(lake, layer, table)
    dates = [date.fromisoformat(v) for p in parts for v in p.values() if _DATE.match(v)]
    newest = max((f.stat().st_mtime for f in files), default=0.0)
    return TableStatus(layer, table, storage.row_count(lake, layer, table), len(parts),
                       max(dates, default=None), round(((now or time.time()) - newest) / 3600, 1))


def lake_status(cfg: DomainConfig) -> list[TableStatus]:
    now = time.time()
    return [table_status(cfg.lake, layer, t, now) for layer in ("bronze", "silver", "gold")
            for t in storage.tables(cfg.lake, layer)
            if any(storage.table_dir(cfg.lake, layer, t).glob(f"**/{storage.DATA_FILE}"))]


def quarantine_summary(cfg: DomainConfig) -> pl.DataFrame:
    """Rejected rows per entity and rule on the latest ingest date, next to the total."""
    lf = storage.scan(cfg.lake, "silver", "quarantine", missing_ok=True)
    if lf is None:
        return pl.DataFrame()
    return (lf.group_by("entity", "rule").agg(
        pl.len().alias("rows_total"),
        (pl.col("ingest_date").cast(pl.String) == pl.col("ingest_date").cast(pl.String).max())
        .sum().alias("rows_latest_day"))
        .sort("entity", "rule").collect())


def render(cfg: DomainConfig) -> str:
    """The status report as plain text."""
    rows = lake_status(cfg)
    out = [f"lake {cfg.lake} ({cfg.name})", "",
           f"{'table':<46}{'rows':>12}{'parts':>7}  {'latest date':<12}{'written':>12}"]
    for s in rows:
        latest = s.latest_partition.isoformat() if s.latest_partition else "-"
        out.append(f"{s.layer + '.' + s.table:<46}{s.rows:>12,}{s.partitions:>7}  {latest:<12}"
                   f"{s.written_hours_ago:>9.1f} h")
    quality = quarantine_summary(cfg)
    out += ["", "quarantine (rejected rows) by entity and rule:"]
    if quality.height == 0:
        out.append("  none")
    for r in quality.iter_rows(named=True):
        out.append(f"  {r['entity']:<24}{r['rule']:<28}{r['rows_total']:>8,} total"
                   f"{r['rows_latest_day']:>8,} on the latest day")
    return "\n".join(out)
