"""``make bench``: the retail growth curve at seed scale (10,247 SKUs x 12 warehouses).

For each history length of ``--history-days`` (a comma list: 28,365,730 by default), in a
fresh lake home:
1. The simulated sources with that much history before the start date.
2. The initial load: the start date's run takes everything up to it as one batch, or, with
   ``--load-step-days N``, runs every N days from the first day of history take a batch each
   (the way the README advises to load years: the figure is their sum, the peak their largest).
3. The next day runs end to end without Airflow (``lakehouse run``): the daily run (target: 60 s).
   With ``--daily-runs N``, N days one after the other, each after the sources moved to it: the
   figure is their median (single runs on this VM moved by up to 40% between runs of one code).
4. The day after runs through ``airflow dags test retail_daily``: Airflow's overhead is the DAG's
   wall time minus the sum of its task instances' durations from Airflow's own metadata.

Each step runs in its own process and reports its wall time and peak RSS; the report gives
each history's figures next to the shortest history's from the same run (the growth ratio).
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
import json
import polars as pl
from lakehouse import memory, runlog
from lakehouse.cli import main
from lakehouse.config import load_domain
main(["--domain", "retail", "run", "--date", "{day}"])
# each task's seconds and peak RSS, as the run history keeps them (the target is per step)
tries = runlog.read(load_domain("configs/retail").lake).filter(pl.col("business_date").cast(str) == "{day}")
# the process's peak: each task resets the kernel's mark to measure its own (lakehouse.memory)
print("__EXTRA__" + json.dumps({{"peak_rss_mb": memory.process_peak_mb(),
      "tasks": {{t: [s, p] for t, s, p in tries.select("task_id", "seconds", "peak_rss_mb").rows()}}}}))
"""


def run(args: argparse.Namespace) -> dict:
    """Every history length of the curve, one after the other, each in its own lake home."""
    curve = []
    for days in args.history_days:
        one = argparse.Namespace(**{**vars(args), "history_days": days, "work": args.work / f"history_{days}"})
        curve.append(run_one(one))
    return {"skus": args.skus, "warehouses": args.warehouses, "load_step_days": args.load_step_days,
            "curve": curve}


def initial_load(first_day, start, step_days: int, child_env: dict[str, str]) -> dict:
    """The start date's run, or with ``step_days`` the README's way for long histories: the
    domain's start date moved to the first day of history (``RETAIL_START_DATE``, set in
    ``child_env`` by the caller), its run the initial load, then a run every ``step_days`` up
    to the configured start date, each taking the batch since the run before (the extraction
    window widens back to the watermark); their summed wall time and largest peak."""
    if not step_days:
        return measure("initial load (direct)", RUN_DAY.format(day=start), child_env)
    days, day = [], first_day
    while day < start:
        days.append(day)
        day += timedelta(days=step_days)
    runs = [measure(f"load to {d}", RUN_DAY.format(day=d), child_env) for d in [*days, start]]
    return {"seconds": sum(r["seconds"] for r in runs), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "largest_task": max((largest_task(r) for r in runs), key=lambda t: t[1]),
            "runs": len(runs), "each": [{"day": str(d), **r} for d, r in zip([*days, start], runs, strict=True)]}


def largest_task(run: dict) -> tuple[str, float]:
    """The task of a measured run with the largest peak RSS (the target is per step), and that peak."""
    peaks = {task: peak for task, (_, peak) in run.get("tasks", {}).items() if peak is not None}
    return max(peaks.items(), key=lambda kv: kv[1]) if peaks else ("?", float("nan"))


def run_one(args: argparse.Namespace) -> dict:
    from lakehouse.airflow_env import airflow, airflow_env
    from lakehouse.config import load_domain
    from pipelines.retail.demo import start_api

    home = args.work
    sources = home / "data" / "sources"
    marker = sources / "bench_simulated.txt"  # what the simulation below was asked for
    wanted = f"{args.skus} {args.warehouses} {args.customers} {args.history_days}"
    reuse = args.reuse_sources and marker.exists() and marker.read_text() == wanted
    if reuse:  # everything but the simulated sources (the lake, its catalog and Airflow's home)
        for path in (home / "data" / "lake", home / "data" / "lakehouse.duckdb", home / "data" / "reports",
                     home / ".airflow"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
    start = load_domain(PROJECT / "configs" / "retail").start_date
    days = [start + timedelta(days=i) for i in range(args.daily_runs + 2)]
    history_start = start - timedelta(days=args.history_days)
    env = airflow_env(home, RETAIL_API_URL=f"http://127.0.0.1:{args.api_port}")
    if args.load_step_days:  # the README's way for long histories: the lake starts on its first day
        env["RETAIL_START_DATE"] = history_start.isoformat()
    child_env = {k: env[k] for k in ("LAKEHOUSE_HOME", "RETAIL_API_URL", "AIRFLOW_HOME", "RETAIL_START_DATE")
                 if k in env}
    airflow("db", "migrate", env=env)
    api_file = sources / "api" / "supplier_performance.parquet"
    sim = dict(skus=args.skus, warehouses=args.warehouses, customers=args.customers,
               history_start=history_start, end=days[-1], api_file=api_file)
    results: dict[str, dict] = {}
    print(f"retail at {args.skus:,} SKUs x {args.warehouses} warehouses, {args.history_days} days of history",
          flush=True)
    if reuse:
        print("  simulated sources of an earlier run reused", flush=True)
        results["simulate_initial"] = {"seconds": None, "peak_rss_mb": None, "reused": True}
    else:
        results["simulate_initial"] = measure("simulate sources", SIMULATE.format(day=days[0], **sim), child_env)
        marker.write_text(wanted)
    api = start_api(home, args.api_port)
    try:
        results["initial_load"] = initial_load(sim["history_start"], days[0], args.load_step_days, child_env)
        daily = []
        for day in days[1:-1]:
            measure("simulate next day", SIMULATE.format(day=day, **sim), child_env)
            daily.append(measure("one day (direct)", RUN_DAY.format(day=day), child_env))
        # the median run (by wall time) stands for the daily run; every run's seconds are kept
        results["seed_day"] = {**sorted(daily, key=lambda r: r["seconds"])[len(daily) // 2],
                               "each_seconds": [r["seconds"] for r in daily],
                               "each_peak_rss_mb": [r["peak_rss_mb"] for r in daily]}
        results["seed_day"]["largest_task"] = largest_task(results["seed_day"])
        print(f"  the daily run's largest task: {results['seed_day']['largest_task']}", flush=True)
        measure("simulate next day", SIMULATE.format(day=days[-1], **sim), child_env)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "retail_daily", days[-1].isoformat()],
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
    curve = figures["curve"]
    base = curve[0]["steps"]
    load = ("as one batch" if not figures["load_step_days"]
            else f"as runs every {figures['load_step_days']} days from the first day of history")
    rows = []
    for point in curve:
        s, a = point["steps"], point["steps"]["airflow_day"]

        def ratio(key: str, field: str = "seconds", s=s) -> str:
            return f"{s[key][field] / base[key][field]:.2f}x"

        sim = s["simulate_initial"]
        simulated = "(reused)" if sim.get("reused") else f"{sim['seconds']:.1f} / {sim['peak_rss_mb']:.0f}"
        load_task, load_peak = s["initial_load"].get("largest_task") or largest_task(s["initial_load"])
        day_task, day_peak = s["seed_day"]["largest_task"]
        each = s["seed_day"].get("each_seconds") or [s["seed_day"]["seconds"]]
        spread = f" of {len(each)}: {min(each):.1f}-{max(each):.1f}" if len(each) > 1 else ""
        rows.append(f"| {point['history_days']} | {simulated} | {s['initial_load']['seconds']:.1f} / "
                    f"{s['initial_load']['peak_rss_mb']:.0f} ({load_task} {load_peak:.0f}) | "
                    f"**{s['seed_day']['seconds']:.1f}** / {s['seed_day']['peak_rss_mb']:.0f} "
                    f"({ratio('seed_day')}{spread}; {day_task} {day_peak:.0f}) | {a['seconds']:.1f} "
                    f"({ratio('airflow_day')}) | {a['overhead_seconds']:.1f} |")
    return "\n".join([
        f"## Retail growth curve ({figures['skus']:,} SKUs x {figures['warehouses']} warehouses)",
        "",
        f"Each history length in a fresh lake, one run each; the initial load {load}. Wall time (s) /",
        "peak RSS (MB) of each step in its own process; ratios against the shortest history of the same run;",
        "in brackets the task with the largest peak RSS of its own (the run history's ``peak_rss_mb``);",
        "with several daily runs, the median run and the range of their wall times.",
        "",
        "| history (days) | simulate | initial load | one daily run, without Airflow (target: 60 s) "
        "| the next day through `airflow dags test` | Airflow's overhead (s) |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=10_247)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--history-days", type=lambda v: [int(d) for d in v.split(",")], default=[28, 365, 730],
                        help="history lengths of the curve, comma-separated (default 28,365,730)")
    parser.add_argument("--load-step-days", type=int, default=0,
                        help="load the history as runs every N days from its first day (0: one batch)")
    parser.add_argument("--daily-runs", type=int, default=1,
                        help="daily runs without Airflow after the load, one day each; the median is reported")
    parser.add_argument("--reuse-sources", action="store_true",
                        help="keep the simulated sources of an earlier run of the same history (and scale)")
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
