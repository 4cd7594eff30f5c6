"""``make bench``: one retail day at seed scale (10,247 SKUs x 12 warehouses) and Airflow's overhead.

1. The simulated sources at seed scale with ``--history-days`` of history; the start date's
   initial load runs first (timed, not the figure).
2. The next day runs end to end without Airflow (``lakehouse run``): the seed-scale day (target: 60 s).
3. The day after runs through ``airflow dags test retail_daily``: Airflow's overhead is the DAG's
   wall time minus the sum of its task instances' durations from Airflow's own metadata.

Each step runs in its own process and reports its wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.tpch_bench import PROJECT, append_section, measure

SIMULATE = """
from datetime import date
from pathlib import Path
from lakehouse.config import load_domain
from pipelines.retail.simulator import SimulationParams, materialise
cfg = load_domain("configs/retail")
params = SimulationParams(n_skus={skus}, n_warehouses={warehouses}, n_customers={customers},
                          history_start=date.fromisoformat("{history_start}"), end=date.fromisoformat("{end}"))
materialise(params, date.fromisoformat("{day}"), erp_url=cfg.source("erp").url,
            landing=Path(cfg.source("inventory_drop").landing_dir), api_file=Path("{api_file}"))
"""

RUN_DAY = """
from lakehouse.cli import main
main(["--domain", "retail", "run", "--date", "{day}"])
"""


def run(args: argparse.Namespace) -> dict:
    from lakehouse.airflow_env import airflow, airflow_env
    from lakehouse.config import load_domain
    from pipelines.retail.demo import start_api

    home = args.work
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    start = load_domain(PROJECT / "configs" / "retail").start_date
    days = [start + timedelta(days=i) for i in range(3)]
    env = airflow_env(home, RETAIL_API_URL=f"http://127.0.0.1:{args.api_port}")
    child_env = {k: env[k] for k in ("LAKEHOUSE_HOME", "RETAIL_API_URL", "AIRFLOW_HOME")}
    airflow("db", "migrate", env=env)
    api_file = home / "data" / "sources" / "api" / "supplier_performance.parquet"
    sim = dict(skus=args.skus, warehouses=args.warehouses, customers=args.customers,
               history_start=start - timedelta(days=args.history_days), end=days[-1], api_file=api_file)
    results: dict[str, dict] = {}
    print(f"retail at {args.skus:,} SKUs x {args.warehouses} warehouses, {args.history_days} days of history",
          flush=True)
    results["simulate_initial"] = measure("simulate sources", SIMULATE.format(day=days[0], **sim), child_env)
    api = start_api(home, args.api_port)
    try:
        results["initial_load"] = measure("initial load (direct)", RUN_DAY.format(day=days[0]), child_env)
        measure("simulate next day", SIMULATE.format(day=days[1], **sim), child_env)
        results["seed_day"] = measure("one day (direct)", RUN_DAY.format(day=days[1]), child_env)
        measure("simulate next day", SIMULATE.format(day=days[2], **sim), child_env)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "retail_daily", days[2].isoformat()],
                       env=env, cwd=PROJECT, check=True, capture_output=True)
        wall = time.perf_counter() - t0
    finally:
        api.terminate()
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        tasks, busy = db.execute(
            "SELECT count(*), sum(duration) FROM task_instance WHERE dag_id = 'retail_daily'").fetchone()
    results["airflow_day"] = {"seconds": wall, "task_seconds": busy, "tasks": tasks,
                              "overhead_seconds": wall - busy}
    print(f"  airflow dags test: {wall:.1f} s wall, {busy:.1f} s in {tasks} tasks, "
          f"overhead {wall - busy:.1f} s", flush=True)
    return {"skus": args.skus, "warehouses": args.warehouses, "history_days": args.history_days,
            "steps": results}


def report(figures: dict) -> str:
    s = figures["steps"]
    a = s["airflow_day"]
    return "\n".join([
        f"## Retail at seed scale ({figures['skus']:,} SKUs x {figures['warehouses']} warehouses)",
        "",
        f"History before the start date: {figures['history_days']} days (the initial load).",
        "",
        "| step | wall (s) | peak RSS (MB) |",
        "|---|---:|---:|",
        f"| initial load, without Airflow | {s['initial_load']['seconds']:.1f} | {s['initial_load']['peak_rss_mb']:.0f} |",
        f"| **one daily run, without Airflow** (target: at most 60 s) | {s['seed_day']['seconds']:.1f} | "
        f"{s['seed_day']['peak_rss_mb']:.0f} |",
        f"| one daily run through `airflow dags test` | {a['seconds']:.1f} | |",
        "",
        f"Airflow's overhead on that run: {a['seconds']:.1f} s wall - {a['task_seconds']:.1f} s in its "
        f"{a['tasks']} task instances = **{a['overhead_seconds']:.1f} s** "
        f"({a['overhead_seconds'] / a['seconds']:.0%} of the run).",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=10_247)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--api-port", type=int, default=8791)
    parser.add_argument("--work", type=Path, default=PROJECT / "data" / "bench" / "retail")
    parser.add_argument("--out", type=Path, default=PROJECT / "data" / "bench_retail.json")
    parser.add_argument("--doc", type=Path, default=PROJECT / "docs" / "benchmarks.md",
                        help="the section is appended to this file (written by tpch_bench first)")
    args = parser.parse_args(argv)
    figures = run(args)
    append_section(figures, report(figures), args.out, args.doc)


if __name__ == "__main__":
    main()
