"""TPC-H through the lakehouse one step per process: where the time and the memory go.

Each step (ingest, stage and build of every table, gold, catalog) runs in a fresh interpreter,
which reports its wall time and peak RSS. The largest RSS is the run's peak, and each figure
belongs to one step. A bare DuckDB CSV -> Parquet copy of the same files closes the run as the
baseline. Usage: ``python -m benchmarks.tpch_steps --scale 10`` (SF10 needs ~35 GB of disk).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.tpch_bench import DUCKDB_COPY, LAST_ORDER_DATE, PROJECT, measure

STEP = """
from datetime import date
from lakehouse import bronze, catalog, gold, silver
from lakehouse.config import load_domain
cfg = load_domain("configs/tpch")
day = date.fromisoformat("{day}")
{call}
"""


def steps(tables: list[str]) -> list[tuple[str, str]]:
    """(name, call) of every step of an initial load, in pipeline order."""
    out = [(f"ingest {t}", f"bronze.ingest(cfg, '{t}_drop', day, 'bench')") for t in tables]
    for t in tables:
        out += [(f"stage {t}", f"silver.stage(cfg, '{t}', day, 'bench')"),
                (f"build {t}", f"silver.build(cfg, '{t}')")]
    return out + [("gold", "gold.build_all(cfg, day)"), ("catalog", "catalog.build_catalog(cfg)")]


def main(argv: list[str] | None = None) -> None:
    from pipelines.tpch.generate import TABLES, generate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=PROJECT / "data" / "bench" / "tpch_steps")
    args = parser.parse_args(argv)
    source = generate(args.scale, args.work / "source")
    home = args.work / "lakehouse"
    shutil.rmtree(home, ignore_errors=True)
    env = {"LAKEHOUSE_HOME": str(home), "TPCH_LANDING_DIR": source["landing"], "TPCH_START_DATE": LAST_ORDER_DATE}
    results = {name: measure(name, STEP.format(day=LAST_ORDER_DATE, call=call), env)
               for name, call in steps(list(TABLES))}
    copy_dir = args.work / "duckdb_copy"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir(parents=True)
    floor = measure("duckdb copy", DUCKDB_COPY.format(tables=TABLES, raw=source["raw"], out=copy_dir))
    total = sum(r["seconds"] for r in results.values())
    peak = max(results.values(), key=lambda r: r["peak_rss_mb"])
    print(f"SF{args.scale:g}: steps {total:.0f} s = {total / floor['seconds']:.1f}x the DuckDB copy "
          f"({floor['seconds']:.0f} s); peak RSS {peak['peak_rss_mb']:.0f} MB "
          f"({next(n for n, r in results.items() if r is peak)})", flush=True)


if __name__ == "__main__":
    main()
