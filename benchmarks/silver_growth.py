"""``make bench``: what one day's silver build costs as history grows (issue 18, ADR 0020).

A latest-version entity shaped like retail's order lines: every day brings ``--new-keys``
new keys and corrects ``--updates`` keys of the last ``--window`` days (late data). The lake is loaded with
``--history-days`` staged days (written straight to the staged table: the figure is the
build, not the simulator), built whole once, then the next day's batch is staged and built
two ways in fresh processes, each from the same starting lake:

* ``incremental``: ``silver.stage_and_build``, the daily task (merge of the touched keys);
* ``full rebuild``: ``silver.stage`` then ``silver.build`` from every staged batch (what
  every daily run did before ADR 0020, and what ``lakehouse rebuild`` does).

Wall time and peak RSS per process; the ratios between history lengths are the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.tpch_bench import PROJECT, append_section, measure

SETUP = """
import sys
from pathlib import Path
sys.path.insert(0, {project!r})
from benchmarks.silver_growth import build_lake
build_lake(Path({lake!r}), {days}, {new_keys}, {updates}, {window})
"""

DAY = """
import sys
from pathlib import Path
sys.path.insert(0, {project!r})
from benchmarks.silver_growth import next_day
next_day(Path({lake!r}), {days}, {new_keys}, {updates}, {window}, {mode!r})
"""

CONTRACT = {
    "entity": "lines", "source": "erp", "primary_key": ["line_id"], "updated_at": "updated_at",
    "history": "latest", "max_quarantine_rate": 1.0,
    "columns": [
        {"name": "line_id", "type": "int64", "nullable": False},
        {"name": "order_date", "type": "date", "nullable": False},
        {"name": "sku", "type": "string", "nullable": False},
        {"name": "quantity", "type": "int64", "nullable": False, "ge": 0},
        {"name": "unit_price", "type": "float64", "nullable": False, "ge": 0},
        {"name": "updated_at", "type": "datetime", "nullable": False},
    ],
}


def _cfg(lake: Path):
    from lakehouse.config import DomainConfig

    return DomainConfig.model_validate({
        "name": "growth", "start_date": "2025-01-01", "lake_root": str(lake),
        "catalog_path": str(lake / "c.duckdb"), "sources": [], "contracts": [CONTRACT], "gold": []})


def _day(i: int, new_keys: int, updates: int, window: int):
    """Day ``i``'s batch: new lines plus corrections of lines from earlier days."""
    from datetime import date, datetime, timedelta

    import numpy as np
    import polars as pl

    rng = np.random.default_rng(i)
    day = date(2025, 1, 1) + timedelta(days=i)
    fresh = np.arange(i * new_keys, (i + 1) * new_keys)
    # corrections of the last ``window`` days' lines (late data arrives within the lookback)
    first = max(i - window, 0) * new_keys
    old = rng.integers(first, max(i * new_keys, first + 1), updates if i else 0)
    ids = np.concatenate([fresh, np.unique(old)])
    frame = pl.DataFrame({
        "line_id": ids, "order_date": [day] * len(ids),
        "sku": [f"SKU{n % 10_247:05d}" for n in ids], "quantity": rng.integers(1, 20, len(ids)),
        "unit_price": np.round(rng.uniform(1, 500, len(ids)), 2),
        "updated_at": [datetime.combine(day, datetime.min.time()) + timedelta(hours=20)] * len(ids),
    }).with_columns(_source_pointer=pl.format("erp/{}#row={}", pl.lit(str(day)), pl.int_range(pl.len())),
                    _record_hash=pl.lit("h"), _ingested_at=pl.lit(datetime(2025, 1, 1)))
    return day, frame


def build_lake(lake: Path, days: int, new_keys: int, updates: int, window: int) -> None:
    from lakehouse import silver, storage

    cfg = _cfg(lake)
    for i in range(days):
        day, frame = _day(i, new_keys, updates, window)
        storage.publish(frame, lake, "silver", "stg_lines", {"ingest_date": day.isoformat()})
    silver.build(cfg, "lines")


def next_day(lake: Path, days: int, new_keys: int, updates: int, window: int, mode: str) -> None:
    from lakehouse import silver, storage

    cfg = _cfg(lake)
    day, frame = _day(days, new_keys, updates, window)
    storage.publish(frame, lake, "bronze", "erp__lines", {"ingest_date": day.isoformat()})
    if mode == "incremental":
        silver.stage_and_build(cfg, "lines", day, "bench")
    else:
        silver.stage(cfg, "lines", day, "bench")
        silver.build(cfg, "lines")


IMPORTS = """
from lakehouse import delta, silver, storage  # noqa: F401
import deltalake  # noqa: F401
"""


def run(args: argparse.Namespace) -> dict:
    # what a process pays before it builds anything: subtracted from the day figures
    figures: dict[str, dict] = {"interpreter and imports": measure("interpreter and imports", IMPORTS)}
    for days in args.history_days:
        base = args.work / f"h{days}"
        shutil.rmtree(base, ignore_errors=True)
        params = dict(project=str(PROJECT), days=days, new_keys=args.new_keys, updates=args.updates,
                      window=args.window)
        print(f"silver growth: {days} days x {args.new_keys:,} new + {args.updates:,} corrected lines a day")
        figures[f"{days}d load"] = measure(f"{days} days: initial build", SETUP.format(lake=str(base / "seed"), **params))
        for mode in ("incremental", "full rebuild"):
            lake = base / mode.replace(" ", "_")
            shutil.copytree(base / "seed", lake, symlinks=True)
            figures[f"{days}d {mode}"] = measure(f"{days} days: next day, {mode}",
                                                 DAY.format(lake=str(lake), mode=mode, **params))
        shutil.rmtree(base, ignore_errors=True)
    return figures


def section(figures: dict, args: argparse.Namespace) -> str:
    lo, hi = min(args.history_days), max(args.history_days)
    rows = "\n".join(f"| {name} | {f['seconds']:.1f} | {f['peak_rss_mb']:.0f} |" for name, f in figures.items())
    floor = figures["interpreter and imports"]["seconds"]
    ratio = {m: (figures[f"{hi}d {m}"]["seconds"] - floor) / (figures[f"{lo}d {m}"]["seconds"] - floor)
             for m in ("incremental", "full rebuild")}
    return (f"## Silver: one day's build as history grows (ADR 0020)\n\n"
            f"A latest-version entity, {args.new_keys:,} new rows a day and {args.updates:,} corrections "
            f"of the last {args.window} days' rows; "
            f"one process per figure.\n\n| step | s | peak RSS MB |\n|---|---|---|\n{rows}\n\n"
            f"{hi} vs {lo} days of history, net of the interpreter and imports ({floor:.1f} s): "
            f"incremental {ratio['incremental']:.2f}x, full rebuild {ratio['full rebuild']:.2f}x.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history-days", type=int, nargs="+", default=[28, 365])
    parser.add_argument("--new-keys", type=int, default=20_000)
    parser.add_argument("--updates", type=int, default=2_000)
    parser.add_argument("--window", type=int, default=7,
                        help="corrections fall on the lines of this many earlier days (retail's lookback)")
    parser.add_argument("--work", type=Path, default=PROJECT / "data" / "bench" / "silver_growth")
    parser.add_argument("--out", type=Path, default=PROJECT / "data" / "bench_silver_growth.json")
    parser.add_argument("--doc", type=Path, default=PROJECT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    figures = run(args)
    print(json.dumps(figures, indent=1))
    append_section(figures, section(figures, args), args.out, args.doc)


if __name__ == "__main__":
    main()
