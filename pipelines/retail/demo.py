"""``make demo``: generate the retail sources and run ``retail_daily`` through Airflow.

The first business date (``start_date`` in configs/retail/domain.yaml) is the
initial load of ~26 months of history, followed by one ``retail_train`` run; the
following days are ordinary daily runs that score with the champion. Before each run the simulator advances the sources to that day, as a live
ERP, API and landing folder would. Rerunning the demo duplicates nothing: bronze
partitions are immutable, everything above is rebuilt idempotently.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from lakehouse.airflow_env import PROJECT, airflow_env
from lakehouse.config import load_domain
from lakehouse.local_airflow import LocalAirflow
from pipelines.retail.simulator import SimulationParams, materialise

CONFIG_DIR = PROJECT / "configs" / "retail"


def api_file(home: Path) -> Path:
    return home / "data" / "sources" / "api" / "supplier_performance.parquet"


def start_api(home: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.retail.api_server", "--data-file", str(api_file(home)),
         "--port", str(port)], cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    if not proc.stdout.readline():  # "supplier API on ..." once it listens; nothing if it died
        raise SystemExit(f"the supplier API could not start on 127.0.0.1:{port} (exit {proc.wait()}): is the "
                         f"port taken, e.g. by a `make airflow-ui` still running? (--api-port picks another)")
    return proc


def world_file(home: Path) -> Path:
    """The last day the simulated sources have been materialised through (``--ui`` reads it)."""
    return home / "data" / "sources" / "simulated_until.txt"


# ``--scale``: the simulated retailer's size (SimulationParams); seed is the reference story's,
# small a quick look (a tenth of the demo's order lines, the same 26 months: training takes a
# third of the time). Every scale but the demo's lives in a home of its own (``home_of``)
SCALES: dict[str, dict[str, int]] = {"demo": {}, "small": {"n_skus": 24, "n_warehouses": 2, "n_customers": 80},
                                     "seed": {"n_skus": 10_247, "n_warehouses": 12, "n_customers": 5_000}}


def home_of(scale: str) -> Path:
    """Where a scale's sources, lake and Airflow live by default: the project for the demo's,
    ``data/<scale>`` for the others (two worlds in one home would rewrite each other's past)."""
    return PROJECT if scale == "demo" else PROJECT / "data" / scale


def load_days(start: date, history_days: int, step_days: int) -> list[date]:
    """The runs that load ``history_days`` before ``start`` (the lake's first day, then every
    ``step_days``, then ``start`` itself): each run takes the batch since the run before."""
    first = start - timedelta(days=history_days)
    return [first + timedelta(days=i) for i in range(0, history_days, step_days)] + [start]


def world_params(home: Path) -> dict:
    """The simulated world's scale and first day of history, as ``make demo`` made it (so that
    ``--next-day`` extends the same world: any other parameters would rewrite its past)."""
    import json

    kept = home / "data" / "sources" / "simulated_world.json"
    if not kept.exists():  # a demo-scale world made before the file was kept
        return {}
    world = json.loads(kept.read_text())
    return {**SCALES[world["scale"]], "history_start": date.fromisoformat(world["history_start"])}


def keep_world_params(home: Path, scale: str, history_start: date) -> None:
    """Keep the world's scale and first day; a home already holding a world of another scale
    is refused (its sources would be overwritten by a different retailer's)."""
    import json

    kept = home / "data" / "sources" / "simulated_world.json"
    if kept.exists() and (made := json.loads(kept.read_text())["scale"]) != scale:
        raise SystemExit(f"{home} holds the {made}-scale world (--scale {made}); a {scale}-scale demo needs a "
                         f"home of its own: leave out --home (it defaults to {home_of(scale)}) or pick another")
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps({"scale": scale, "history_start": history_start.isoformat()}))


def run_days(home: Path, days: list[date], params: SimulationParams, env: dict[str, str], *,
             train_after: date | None = None) -> None:
    """Each day through Airflow's scheduler, as production runs it: the sources advance to the
    day (from the day before: the simulated past never changes), then ``airflow backfill
    create`` runs it (so the UI shows real durations, every task's log and the runs in
    business-date order). ``retail_train`` is unpaused for the run of ``train_after`` (the
    day the history is loaded), whose backfill announces new history and so triggers it once;
    it is paused again afterwards, so the daily runs that follow score with that champion and
    trigger no more training (a paused DAG queues no asset event: the runs before do not)."""
    cfg = load_domain(CONFIG_DIR)
    with LocalAirflow(env, Path(env["AIRFLOW_HOME"]) / "demo_standalone.log") as af:
        af.unpause("retail_daily")
        for day in days:
            t0 = time.perf_counter()
            materialise(params, day, erp_url=cfg.source("erp").url,
                        landing=Path(cfg.source("inventory_drop").landing_dir), api_file=api_file(home))
            world_file(home).write_text(day.isoformat())
            trained = {r["dag_run_id"] for r in af.dag_runs("retail_train")}
            if day == train_after:
                af.unpause("retail_train")
            af.backfill("retail_daily", day.isoformat(), day.isoformat(), "--reprocess-behavior", "completed")
            af.wait_runs("retail_daily", [day.isoformat()], 3600)
            print(f"  {day}  retail_daily succeeded through Airflow's scheduler ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            if day == train_after:
                t0 = time.perf_counter()
                run = af.wait_new_run("retail_train", trained, 3600, run_type="asset_triggered")
                af.set_paused("retail_train", True)
                print(f"  {day}  retail_train ({run['run_type']}) succeeded through Airflow's scheduler "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)


def summary(home: Path) -> str:
    from lakehouse.catalog import connect_read_only

    cfg = load_domain(CONFIG_DIR)
    con = connect_read_only(cfg)  # registers an object-store lake (ADR 0013)
    q = con.execute
    layers = q("""SELECT schema_name, count(*) FROM duckdb_views() WHERE NOT internal
                  GROUP BY 1 ORDER BY 1""").fetchall()
    rows = {t: q(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
        "bronze.erp__order_lines", "silver.order_lines", "gold.fct_order_lines",
        "gold.fct_inventory_daily", "gold.dim_product", "silver.quarantine", "gold.fct_demand_forecast")}
    by_rule = q("SELECT entity, rule, count(*) FROM silver.quarantine GROUP BY ALL ORDER BY 3 DESC").fetchall()
    model = q("""SELECT model_version, metric_wape, metric_wape_seasonal_naive,
                        metric_improvement_vs_seasonal_naive, metric_wape_sklearn_hist_gbm,
                        metric_cv_wape_xgboost, metric_cv_wape_seasonal_naive, metric_cv_folds
                 FROM gold.ml_models ORDER BY trained_for_date DESC, model_version LIMIT 1""").fetchone()
    risk = q("SELECT risk, count(*) FROM gold.rpt_stockout_risk GROUP BY 1 ORDER BY 2 DESC").fetchall()
    champion = q("SELECT model_version FROM gold.ml_model_events ORDER BY sequence DESC LIMIT 1").fetchone()[0]
    late = q("""SELECT count(*) FILTER (WHERE is_deleted), count(*) FILTER (WHERE is_inferred)
                FROM gold.dim_customer""").fetchone()
    from lakehouse import runlog

    # each Airflow task's own process records its peak in the run history (lakehouse.memory)
    tries = runlog.read(cfg.lake).drop_nulls("peak_rss_mb").sort("peak_rss_mb", descending=True)
    largest = tries.row(0, named=True) if tries.height else None
    lines = ["", "=== lakehouse demo: summary ===",
             "views per schema: " + ", ".join(f"{s}={n}" for s, n in layers)]
    lines += [f"  {t:<32} {n:>10,} rows" for t, n in rows.items()]
    lines += ["quarantined by rule: " + "; ".join(f"{e}/{r}: {n}" for e, r, n in by_rule)]
    lines += [f"closed-account versions in dim_customer: {late[0]}, inferred customers: {late[1]}"]
    lines += [f"latest challenger {model[0]}: WAPE {model[1]:.3f} vs seasonal-naive {model[2]:.3f} "
              f"({model[3]:.0%} better), scikit-learn HistGBM {model[4]:.3f}; serving champion: {champion}",
              f"  rolling-origin CV over {model[7]:.0f} folds: WAPE {model[5]:.3f} vs seasonal-naive {model[6]:.3f}",
              "stockout risk (gold.rpt_stockout_risk): " + ", ".join(f"{r}={n}" for r, n in risk),
              ("largest peak memory of a task: " + (
                  f"{largest['peak_rss_mb']:,.0f} MB, {largest['task_id']} of {largest['dag_id']}"
                  + (f" for {largest['business_date']}" if largest["business_date"] else "")
                  + " (each task's own process, from the run history)"
                  if largest else "not recorded")),
              f"DuckDB catalog: {cfg.catalog_path}",
              "  .venv/bin/lakehouse sql \"SELECT category, sum(revenue) FROM "
              "gold.agg_sales_category_warehouse_daily GROUP BY 1 ORDER BY 2 DESC\"",
              "Airflow UI: make airflow-ui, then http://localhost:8080 (user admin, password in "
              ".airflow/simple_auth_manager_passwords.json.generated)"]
    return "\n".join(lines)


def ui(home: Path, api_port: int) -> None:
    """``make airflow-ui``: everything the DAGs need on the demo's Airflow home (the supplier
    API, ``airflow standalone`` on loopback), with the simulated world's last day as the DAGs'
    end date, so an unpaused DAG gets no run for a day the sources never saw."""
    import contextlib
    import socket

    world = world_file(home)
    until = world.read_text().strip() if world.exists() else ""
    env = airflow_env(home, RETAIL_API_URL=f"http://127.0.0.1:{api_port}", RETAIL_END_DATE=until)
    with contextlib.closing(socket.socket()) as probe:
        api_running = probe.connect_ex(("127.0.0.1", api_port)) == 0
    api = None if api_running or not api_file(home).exists() else start_api(home, api_port)
    print(f"supplier API on http://127.0.0.1:{api_port}" + (" (already running)" if api_running else ""))
    print(f"Airflow UI on http://localhost:{env['AIRFLOW__API__PORT']} (user admin, password in "
          f"{env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated); "
          f"simulated sources through {until or '(none yet: make demo)'}; Airflow's log: "
          f"{env['AIRFLOW_HOME']}/standalone.log; Ctrl-C stops", flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a kill stops Airflow and the API too
    try:
        with LocalAirflow(env, Path(env["AIRFLOW_HOME"]) / "standalone.log"):
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if api is not None:
            api.terminate()


def next_day(home: Path, api_port: int) -> None:
    """``make demo-next-day``: the sources live one more day (only that day is simulated; every
    earlier day stays byte-identical, so nothing arrives as a false late correction), and
    ``retail_daily`` runs it through the scheduler; the DAGs' end date moves with it."""
    world = world_file(home)
    if not world.exists():
        raise SystemExit(f"{world} is missing: run `make demo` first")
    day = date.fromisoformat(world.read_text().strip()) + timedelta(days=1)
    env = airflow_env(home, RETAIL_API_URL=f"http://127.0.0.1:{api_port}", RETAIL_END_DATE=day.isoformat())
    t0 = time.perf_counter()
    api = start_api(home, api_port)
    try:
        print(f"Advancing the simulated sources to {day} and running retail_daily for it", flush=True)
        run_days(home, [day], SimulationParams(**world_params(home), end=day), env)
    finally:
        api.terminate()
    print(f"simulated sources through {day}; {time.perf_counter() - t0:.0f} s. `make airflow-ui` shows the run.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3, help="daily runs after the initial load")
    parser.add_argument("--home", type=Path, default=None,
                        help="where the sources, the lake and Airflow live (default: the project at demo scale, "
                             "else data/<scale>)")
    parser.add_argument("--api-port", type=int, default=8765)
    parser.add_argument("--sources-only", type=date.fromisoformat, metavar="DATE", default=None,
                        help="only make the sources look as they do at the end of DATE (containers' init)")
    parser.add_argument("--next-day", action="store_true",
                        help="advance the simulated sources one day past the demo's last and run that day through "
                             "Airflow (make demo-next-day)")
    parser.add_argument("--ui", action="store_true",
                        help="start the supplier API and Airflow (make airflow-ui) on the demo's home, until Ctrl-C")
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo",
                        help="demo: 120 SKUs x 4 warehouses; small: 24 x 2, a quick look (make demo SCALE=small); "
                             "seed: 10,247 SKUs x 12 warehouses with --history-days of history, loaded through "
                             "Airflow a run every --load-step-days from the first day (make demo SCALE=seed)")
    parser.add_argument("--history-days", type=int, default=730, help="seed scale: days of history before the "
                        "start date (the demo scale keeps its own, from 2024-09-01); training needs about 100 "
                        "(5 weeks for the features, a month to train on, the 4-week holdout)")
    parser.add_argument("--load-step-days", type=int, default=30, help="seed scale: days a load run takes")
    args = parser.parse_args()
    if args.home is None:  # the other scales' worlds have homes of their own: the demo's stays as it is
        args.home = home_of(args.scale)
    # the sources, the lake and Airflow all live under --home: the config reads it too
    os.environ["LAKEHOUSE_HOME"] = str(args.home)
    cfg = load_domain(CONFIG_DIR)
    if args.ui:
        ui(args.home, args.api_port)
        return
    if args.next_day:
        next_day(args.home, args.api_port)
        return
    if args.sources_only:
        print(materialise(SimulationParams(end=args.sources_only), args.sources_only,
                          erp_url=cfg.source("erp").url, api_file=api_file(args.home),
                          landing=Path(cfg.source("inventory_drop").landing_dir)))
        return
    start = cfg.start_date
    daily = [start + timedelta(days=i) for i in range(1, args.days + 1)]
    overrides: dict[str, str] = {}
    if args.scale == "seed":
        # the README's way for long histories: the lake starts on the first day of history and
        # loads it a run every --load-step-days (each takes the batch since the run before)
        load = load_days(start, args.history_days, args.load_step_days)
        first = load[0]
        overrides["RETAIL_START_DATE"] = first.isoformat()
    else:
        first, load = SimulationParams().history_start, [start]
    days = load + daily
    keep_world_params(args.home, args.scale, first)
    params = SimulationParams(**world_params(args.home), end=days[-1])
    # the simulated world ends on the demo's last day: the scheduler creates no run after it
    # (an unpaused DAG would otherwise get a run for yesterday by the wall clock)
    env = airflow_env(args.home, RETAIL_API_URL=f"http://127.0.0.1:{args.api_port}",
                      RETAIL_END_DATE=days[-1].isoformat(), **overrides)
    t0 = time.perf_counter()
    print(f"Airflow metadata DB: {env['AIRFLOW_HOME']} (SQLite); scheduler log: "
          f"{env['AIRFLOW_HOME']}/demo_standalone.log", flush=True)
    api = start_api(args.home, args.api_port)
    try:
        print(f"Running retail_daily for {days[0]} (initial load) .. {days[-1]}"
              + (f" at {args.scale} scale, loading {start}'s history a run every {args.load_step_days} days"
                 if len(load) > 1 else ""), flush=True)
        run_days(args.home, days, params, env, train_after=start)
    finally:
        api.terminate()
    print(summary(args.home))
    print(f"total demo time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
