"""Run history in the lake: one small JSON record per task try, written by Airflow callbacks.

Each record holds the try's state, times, error and the peak RSS of the task (``peak_rss_mb``:
its process's under Airflow, its own under ``lakehouse run``; absent in older records).

The health dashboard (``lakehouse report``) reads it to chart runs, durations and
failures without credentials for Airflow's metadata database or REST API, and it
survives a metadata database being reset. Each try writes its own file (atomic
rename), so concurrent runs never contend for a lock.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # polars loads when a report reads the history, not when a DAG file is parsed
    import polars as pl

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def _schema() -> dict:
    import polars as pl

    return {"dag_id": pl.String, "run_id": pl.String, "run_type": pl.String, "business_date": pl.Date,
            "task_id": pl.String, "try_number": pl.Int64, "state": pl.String,
            "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"), "seconds": pl.Float64,
            "error": pl.String, "peak_rss_mb": pl.Float64}


def runs_dir(lake: Path | str) -> Path | str:
    from lakehouse import storage

    return storage.state_path(lake, "runs")


def record(lake: Path, entry: dict) -> Path:
    """Write one task-try record (atomically) and return its path."""
    from lakehouse import storage

    name = "__".join(_UNSAFE.sub("_", str(entry[k])) for k in ("run_id", "task_id", "try_number"))
    path = storage.join(runs_dir(lake), _UNSAFE.sub("_", entry["dag_id"]), f"{name}.json")
    storage.write_json(path, entry)
    return path


ERROR_HEAD, ERROR_TAIL = 1500, 500


def error_text(error: BaseException | str | None) -> str | None:
    """An error as the run history keeps it: whole up to 2,000 characters, else its head and its
    tail (a wrapped error's cause, "Connection refused", is usually at the end)."""
    text = str(error or "").strip()
    if not text:
        return None
    if len(text) <= ERROR_HEAD + ERROR_TAIL:
        return text
    return f"{text[:ERROR_HEAD]} [... {len(text) - ERROR_HEAD - ERROR_TAIL:,} characters ...] {text[-ERROR_TAIL:]}"


def _entry(context: dict, state: str, tz: str) -> dict:
    from lakehouse import memory
    from lakehouse.dag_factory import business_date_of

    ti = context.get("task_instance") or context.get("ti")
    run = context.get("dag_run")
    logical = context.get("logical_date")
    start = getattr(ti, "start_date", None)
    end = datetime.now(UTC)
    return {
        "dag_id": context["dag"].dag_id, "run_id": context.get("run_id") or getattr(ti, "run_id", "?"),
        "run_type": str(getattr(run, "run_type", "") or ""),
        # the date the run processed: a date typed on the CLI is midnight UTC (dag_factory)
        "business_date": business_date_of(logical, tz).isoformat() if logical else None,
        "task_id": ti.task_id, "try_number": int(getattr(ti, "try_number", 0) or 0), "state": state,
        "start": start.isoformat() if start else None, "end": end.isoformat(),
        "seconds": round((end - start).total_seconds(), 3) if start else None,
        "error": error_text(context.get("exception")),
        # the task's own process: its peak since it started (a callback runs in that process)
        "peak_rss_mb": memory.peak_rss_mb(),
    }


def callback(config_dir: str, state: str) -> Callable[[dict], None]:
    """An Airflow task callback recording ``state``; it never fails the task it reports on."""
    return functools.partial(_on_task_end, config_dir, state)


def _on_task_end(config_dir: str, state: str, context: dict) -> None:
    from lakehouse.config import load_domain

    try:
        cfg = load_domain(config_dir)
        record(cfg.lake, _entry(context, state, cfg.timezone))
    except Exception:  # the run history is a report's input, never a reason to fail a task
        log.exception("could not record the task's run history")


def read(lake: Path) -> pl.DataFrame:
    """Every recorded task try, oldest first (empty frame with the schema if none)."""
    import polars as pl

    schema = _schema()
    from lakehouse import storage

    files = storage.find(runs_dir(lake), "*/*.json")
    if not files:
        return pl.DataFrame(schema=schema)
    rows = [storage.read_json(f, {}) for f in files]
    return (pl.DataFrame(rows, schema={k: pl.String if k in ("business_date", "start", "end") else v
                                       for k, v in schema.items()})
            .with_columns(pl.col("business_date").str.to_date(),
                          pl.col("start", "end").str.to_datetime(time_zone="UTC", time_unit="us"))
            .sort("end"))


# tries of one DAG run further apart than this (no task of it running meanwhile) are separate
# executions: a day cleared and rerun an hour later took the rerun's time, not the hour between
IDLE_GAP_S = 120


def run_summary(tries: pl.DataFrame) -> pl.DataFrame:
    """One row per DAG run: business date, when its latest execution started and how long it
    took (its first task start to its last task end; a rerun of a cleared day is an execution of
    its own, ``IDLE_GAP_S``), how many executions, tasks, retries and failures it had."""
    import polars as pl

    if tries.height == 0:
        return pl.DataFrame(schema={"dag_id": pl.String, "run_id": pl.String, "business_date": pl.Date,
                                    "start": _schema()["start"], "seconds": pl.Float64, "executions": pl.UInt32,
                                    "tasks": pl.UInt32, "retries": pl.UInt32, "failed": pl.UInt32,
                                    "state": pl.String})
    run = ["dag_id", "run_id"]
    # a task's outcome is its latest try: a day cleared and rerun successfully is a success
    final = tries.sort("end").group_by(*run, "task_id").agg(pl.col("state").last())
    idle = pl.col("start") > (pl.col("end").cum_max().shift(1) + pl.duration(seconds=IDLE_GAP_S)).over(run)
    executions = (tries.sort("start").with_columns(
        _execution=idle.fill_null(False).cast(pl.UInt32).cum_sum().over(run))
        .group_by(*run, "_execution").agg(pl.col("start").min(), pl.col("end").max()))
    latest = (executions.sort("_execution").group_by(run).agg(
        pl.col("start").last(),
        ((pl.col("end").last() - pl.col("start").last()).dt.total_milliseconds() / 1000).alias("seconds"),
        pl.len().cast(pl.UInt32).alias("executions")))
    return (tries.group_by(run)
            .agg(pl.col("business_date").first(),
                 pl.col("task_id").n_unique().cast(pl.UInt32).alias("tasks"),
                 (pl.col("state") == "up_for_retry").sum().cast(pl.UInt32).alias("retries"))
            .join(latest, on=run)
            .join(final.group_by(run).agg(
                (pl.col("state") == "failed").sum().cast(pl.UInt32).alias("failed")), on=run)
            .with_columns(pl.when(pl.col("failed") > 0).then(pl.lit("failed")).otherwise(pl.lit("success"))
                          .alias("state"))
            .select("dag_id", "run_id", "business_date", "start", "seconds", "executions", "tasks", "retries",
                    "failed", "state")
            .sort("start"))
