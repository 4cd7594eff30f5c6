"""``make bench``: backfill throughput through Airflow's scheduler, max-active-runs 1 vs 2.

A small simulated retailer (the test fixture's scale) on ``airflow standalone`` with
PostgreSQL metadata (LocalExecutor): ``airflow backfill create`` over ``--days`` dates, timed
from the command to the last run's success, once with ``--max-active-runs 1`` and once with 2,
each on a fresh lake and a fresh metadata database. Appends a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

from benchmarks.tpch_bench import PROJECT, append_section


def _database() -> tuple[str, object]:
    import sqlalchemy as sa

    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    name = f"lakehouse_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", (admin, name)


def _drop(handle) -> None:
    import sqlalchemy as sa

    admin, name = handle
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def backfill(home: Path, days: int, max_active: int) -> dict:
    from pipelines.retail.api_server import serve
    from tests.airflow_cluster import Standalone
    from tests.conftest import START, TINY, TinyRetail

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    dates = [(START + timedelta(days=i)).isoformat() for i in range(days)]
    api_file = home / "data" / "sources" / "api" / "supplier_performance.parquet"
    server = serve(api_file)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ.update(LAKEHOUSE_HOME=str(home), RETAIL_API_URL=url)
    metadata, handle = _database()
    try:
        retail = TinyRetail(home, url, api_file)
        retail.advance(START + timedelta(days=days - 1), dataclasses.replace(TINY, end=START + timedelta(days=days)))
        with Standalone(home, metadata, RETAIL_API_URL=url, RETAIL_END_DATE=dates[-1],
                        RETAIL_TRAIN_SCHEDULE="0 6 29 2 *") as cluster:
            cluster.unpause("retail_daily")
            t0 = time.perf_counter()
            cluster.backfill("retail_daily", dates[0], dates[-1], "--max-active-runs", str(max_active))
            runs = cluster.wait_runs("retail_daily", dates, 1800)
            wall = time.perf_counter() - t0
    finally:
        server.shutdown()
        _drop(handle)
    result = {"max_active_runs": max_active, "days": days, "seconds": wall,
              "runs_per_hour": 3600 * len(runs) / wall}
    print(f"  max-active-runs {max_active}: {days} days in {wall:.0f} s ({result['runs_per_hour']:.0f} runs/h)",
          flush=True)
    return result


def report(results: list[dict]) -> str:
    one, two = results
    return "\n".join([
        "## Backfill throughput through the scheduler",
        "",
        f"`airflow backfill create` of {one['days']} days of the test-scale retailer on `airflow standalone` "
        "(LocalExecutor, PostgreSQL metadata), timed from the command to the last run's success.",
        "",
        "| max-active-runs | wall (s) | runs per hour |",
        "|---:|---:|---:|",
        *(f"| {r['max_active_runs']} | {r['seconds']:.0f} | {r['runs_per_hour']:.0f} |" for r in results),
        "",
        f"Two runs at once: **{two['runs_per_hour'] / one['runs_per_hour']:.2f}x** the throughput of one "
        "(2 cores; silver and gold steps of concurrent days take turns on the lake's locks, ADR 0004).",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--work", type=Path, default=PROJECT / "data" / "bench" / "backfill")
    parser.add_argument("--out", type=Path, default=PROJECT / "data" / "bench_backfill.json")
    parser.add_argument("--doc", type=Path, default=PROJECT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    results = [backfill(args.work / f"mar{n}", args.days, n) for n in (1, 2)]
    append_section(results, report(results), args.out, args.doc)


if __name__ == "__main__":
    main()
