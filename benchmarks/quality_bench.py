"""``make bench``: what validation costs in a silver build (issue 4: at most 15%).

One bronze batch of ``--rows`` order lines (text columns as a file drop sends them, 1% of
rows broken in various ways) is staged and built into silver twice per repeat: once as the
pipeline does it (typing, pandera rules, quarantine, quality history) and once with the
validation step replaced by "everything passes" (the baseline, same run, same data). The
figure is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import polars as pl

START = date(2026, 11, 1)


def raw_batch(rows: int) -> pl.DataFrame:
    """Order lines as bronze holds them for a file source (all text), with lineage and 1% faults."""
    i = pl.col("i")
    bad = (i % 100) == 0
    kind = (i // 100) % 4
    frame = pl.DataFrame({"i": pl.int_range(rows, eager=True)}).select(**{
        "order_line_id": pl.format("OL{}", i),
        "order_id": pl.format("O{}", i // 3),
        "product_id": pl.format("SKU{}", (i * 7919 % 10_247).cast(pl.String).str.zfill(6)),
        "warehouse_id": pl.format("WH{}", (i % 12 + 1).cast(pl.String).str.zfill(2)),
        "quantity": pl.when(bad & (kind == 0)).then(pl.lit("-2")).when(bad & (kind == 1)).then(pl.lit("two"))
        .otherwise((i % 9 + 1).cast(pl.String)),
        "unit_price": ((i % 500) / 10 + 0.5).cast(pl.String),
        "discount_pct": pl.when(bad & (kind == 2)).then(pl.lit("1.5")).otherwise(pl.lit("0.1")),
        "updated_at": pl.lit("2026-10-31 12:00:00"),
    }, i=i)
    digest = [hashlib.md5(str(k).encode()).hexdigest() for k in range(rows)]
    return frame.with_columns(
        pl.when(bad & (kind == 3)).then(pl.lit(None)).otherwise(pl.col("product_id")).alias("product_id"),
        pl.format("bench.csv#row={}", i + 2).alias("_source_pointer"),
        pl.Series("_record_hash", digest),
        pl.lit(datetime(2026, 11, 1, 6)).alias("_ingested_at"),
    ).drop("i")


def _stage_and_build(cfg, validate: bool) -> float:
    from lakehouse import silver

    original = silver.split_valid
    if not validate:
        def everything_passes(typed, parse_failures, contract, duplicates=None):
            return typed, parse_failures.select("_row", pl.lit("parse").alias("rule"), "column",
                                                pl.col("value").alias("offending_value")).clear()
        silver.split_valid = everything_passes
    try:
        t0 = time.perf_counter()
        silver.stage(cfg, "order_lines", START, "bench")
        silver.build(cfg, "order_lines")
        return time.perf_counter() - t0
    finally:
        silver.split_valid = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["LAKEHOUSE_HOME"] = home
        from lakehouse import storage
        from lakehouse.config import load_domain

        cfg = load_domain(Path(__file__).resolve().parents[1] / "configs" / "retail")
        contracts = [c.model_copy(update={"max_quarantine_rate": 1.0}) for c in cfg.contracts]
        cfg = cfg.model_copy(update={"contracts": contracts})
        raw = raw_batch(args.rows)
        storage.publish(raw, cfg.lake, "bronze", "erp__order_lines", {"ingest_date": START.isoformat()})
        timings: dict[str, list[float]] = {"validated": [], "baseline": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            timings["baseline"].append(_stage_and_build(cfg, validate=False))
            timings["validated"].append(_stage_and_build(cfg, validate=True))
        quarantined = storage.row_count(cfg.lake, "silver", "quarantine")
    base, full = statistics.median(timings["baseline"]), statistics.median(timings["validated"])
    figures = {
        "rows": args.rows, "quarantined_rows": quarantined,
        "silver_build_s_without_validation": round(base, 3), "silver_build_s_with_validation": round(full, 3),
        "validation_overhead_ratio": round(full / base - 1, 3),
        "rows_per_s_with_validation": round(args.rows / full),
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
