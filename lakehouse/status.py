"""``lakehouse status``: freshness, last write and quality per table, for a terminal.

Read from the lake itself (Parquet metadata and file times), so it works without
Airflow and without opening the DuckDB catalog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from lakehouse import storage
from lakehouse.config import DomainConfig
from lakehouse.freshness import check, default_as_of, latest_date


class NoLake(FileNotFoundError):
    """The lake a status was asked of does not exist (a wrong folder, not an empty lake)."""


@dataclass(frozen=True)
class TableStatus:
    layer: str
    table: str
    rows: int
    partitions: int
    latest_partition: date | None  # newest date-valued partition (business date)
    written_hours_ago: float  # age of the newest data file


def table_status(lake: Path, layer: str, table: str, now: float | None = None) -> TableStatus:
    newest = max(map(storage.modified_time, storage.data_files(lake, layer, table)), default=0.0)
    return TableStatus(layer, table, storage.row_count(lake, layer, table),
                       len(storage.partitions(lake, layer, table)), latest_date(lake, layer, table),
                       round(((now or time.time()) - newest) / 3600, 1))


def lake_status(cfg: DomainConfig) -> list[TableStatus]:
    """Every table with data, named and counted as the catalog serves it: a table the catalog
    de-duplicates (``silver.quarantine``: a record re-read by a lookback is one row) shows that
    count, and its ``_log`` twin every row kept."""
    import dataclasses

    from lakehouse.catalog import DEDUPED

    now = time.time()
    out = []
    for layer in ("bronze", "silver", "gold"):
        for t in storage.tables(cfg.lake, layer):
            if not storage.data_files(cfg.lake, layer, t):
                continue
            kept = table_status(cfg.lake, layer, t, now)
            if f"{layer}.{t}" in DEDUPED:
                out.append(dataclasses.replace(kept, rows=_first_rows(cfg, layer, t).select(pl.len()).collect().item()))
                kept = dataclasses.replace(kept, table=f"{t}_log")
            out.append(kept)
    return out


def _first_rows(cfg: DomainConfig, layer: str, table: str) -> pl.LazyFrame:
    """A de-duplicated table's rows as the catalog's view has them: each key's first row."""
    from lakehouse.catalog import DEDUPED

    key, order = ([c.strip() for c in part.split(",")] for part in DEDUPED[f"{layer}.{table}"])
    lf = storage.scan(cfg.lake, layer, table)
    return lf.with_columns(pl.col("ingest_date").cast(pl.String)).sort(order).unique(
        key, keep="first", maintain_order=True)


def quarantine_summary(cfg: DomainConfig) -> pl.DataFrame:
    """Rejected records per entity and rule, in all and first rejected on the latest day a batch
    was staged (``latest_day``: the newest ``silver.stg_*`` partition, so a day that rejected
    nothing shows 0, not the last day that rejected something).

    A record re-read by a lookback window is rejected again by that batch; it is counted once,
    at its first rejection, as the catalog's ``silver.quarantine`` view shows it
    (``lakehouse.catalog.DEDUPED``), so the two never disagree.
    """
    lf = storage.scan(cfg.lake, "silver", "quarantine", missing_ok=True)
    if lf is None:
        return pl.DataFrame()
    day = pl.col("ingest_date").cast(pl.String)
    firsts = _first_rows(cfg, "silver", "quarantine")
    staged = [p["ingest_date"] for c in cfg.contracts
              for p in storage.partitions(cfg.lake, "silver", f"stg_{c.entity}") if "ingest_date" in p]
    latest = max(staged, default=None) or lf.select(day.max()).collect().item()
    return (firsts.group_by("entity", "rule").agg(
        pl.len().alias("rows_total"), (pl.col("ingest_date") == latest).sum().alias("rows_latest_day"))
        .with_columns(pl.lit(latest).alias("latest_day")).sort("entity", "rule").collect())


def checks_summary(cfg: DomainConfig) -> pl.DataFrame:
    """The latest business date's checks per dataset: how many ran, and which did not pass."""
    from lakehouse import quality

    lf = quality.history(cfg)
    if lf is None:
        return pl.DataFrame()
    latest = lf.select(pl.col("business_date").cast(pl.String).max()).collect().item()
    return (lf.filter(pl.col("business_date").cast(pl.String) == latest)
            .group_by("business_date", "dataset").agg(
                pl.len().alias("checks"),
                pl.format("{} {} ({})", "check", "status", "failing_count")
                # no baseline yet is no verdict: not listed as a check that did not pass
                .filter(~pl.col("status").is_in(["pass", "no_baseline"])).sort().str.join(", ")
                .alias("not_passing"))
            .sort("dataset").collect())


def unchecked_failure(cfg: DomainConfig, checks: pl.DataFrame) -> str | None:
    """A line for the newest daily run when it failed before recording any check, so the
    checks of an earlier date below it are not read as that run's 'all pass'."""
    from lakehouse import runlog

    tries = runlog.read(cfg.lake).filter(pl.col("dag_id") == f"{cfg.name}_daily")
    runs = runlog.run_summary(tries).drop_nulls("business_date").sort("business_date")
    if runs.height == 0:
        return None
    last = runs.row(-1, named=True)
    checked = set(checks["business_date"].cast(pl.String)) if checks.height else set()
    if last["state"] != "failed" or str(last["business_date"]) in checked:
        return None
    final = (tries.filter(pl.col("run_id") == last["run_id"]).sort("end")
             .group_by("task_id").agg(pl.col("state").last()))
    failed = sorted(final.filter(pl.col("state") == "failed")["task_id"])
    return (f"  {last['business_date']}  no checks recorded: the run failed before them "
            f"(failed: {', '.join(failed)})")


def render(cfg: DomainConfig, as_of: date | None = None) -> str:
    """The status report as plain text: last runs, freshness, tables, quarantine."""
    from lakehouse import runlog

    if not storage.path_exists(cfg.lake):
        raise NoLake(f"no lake at {cfg.lake}: run from the project folder, or set LAKEHOUSE_HOME "
                                "(or the domain's lake_root) to where the pipeline writes it")
    chosen, as_of = as_of, as_of or default_as_of(cfg)
    rows = lake_status(cfg)
    out = [f"lake {cfg.lake} ({cfg.name})", "", "last runs:"]
    runs = runlog.run_summary(runlog.read(cfg.lake)).tail(5)
    if runs.height == 0:
        out.append("  none recorded (runs are recorded by the Airflow DAGs' task callbacks)")
    for r in runs.iter_rows(named=True):
        reruns = f" (latest of {r['executions']} executions)" if r["executions"] > 1 else ""
        out.append(f"  {r['dag_id']:<16}{str(r['business_date']):<12}{r['state']:<9}{r['seconds']:>8.1f} s"
                   f"  {r['tasks']} tasks, {r['retries']} retries, {r['failed']} failed{reruns}  ({r['run_id']})")
    newest = max((r["business_date"] for r in runlog.run_summary(runlog.read(cfg.lake)).iter_rows(named=True)
                  if r["dag_id"] == f"{cfg.name}_daily" and r["business_date"] is not None), default=None)
    why = "" if chosen else (
        f" (yesterday by the wall clock; the newest business date run is {newest}: --as-of {newest} measures "
        "against it)" if newest is not None and newest < as_of else " (yesterday by the wall clock)")
    out += ["", f"freshness as of {as_of}{why}:"]
    for f in check(cfg, as_of):
        lag = "-" if f.lag_days is None else f"{f.lag_days} d"
        out.append(f"  {'OK   ' if f.fresh else 'STALE'} {f.table:<44} newest {str(f.latest):<12}"
                   f"lag {lag:>6} (max {f.max_lag_days} d)")
    out += ["",
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
                   f"{r['rows_latest_day']:>8,} first rejected on {r['latest_day']} (the latest batch)")
    checks = checks_summary(cfg)
    out += ["", "quality checks on the latest business date (gold.quality_checks):"]
    if note := unchecked_failure(cfg, checks):
        out.append(note)
    if checks.height == 0:
        out.append("  none recorded")
    for r in checks.iter_rows(named=True):
        out.append(f"  {str(r['business_date']):<12}{r['dataset']:<34}{r['checks']:>4} checks  "
                   f"{r['not_passing'] or 'all pass'}")
    return "\n".join(out)
