"""``make demo``: generate the retail sources and run ``retail_daily`` through Airflow.

The first business date (``start_date`` in configs/retail/domain.yaml) is the
initial load of ~26 months of history, followed by one ``retail_train`` run; the
following days are ordinary daily runs that score with the champion. Before each run the simulator advances the sources to that day, as a live
ERP, API and landing folder would. Rerunning the demo duplicates nothing: bronze
partitions are immutable, everything above is rebuilt idempotently.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from lakehouse.airflow_env import PROJECT, airflow, airflow_env
from lakehouse.config import load_domain
from pipelines.retail.simulator import SimulationParams, materialise

CONFIG_DIR = PROJECT / "configs" / "retail"


def api_file(home: Path) -> Path:
    return home / "data" / "sources" / "api" / "supplier_performance.parquet"


def start_api(home: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.retail.api_server", "--data-file", str(api_file(home)),
         "--port", str(port)], cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # "supplier API on ..." once it listens
    return proc


def run_days(home: Path, days: list[date], params: SimulationParams, env: dict[str, str]) -> None:
    cfg = load_domain(CONFIG_DIR)
    for day in days:
        t0 = time.perf_counter()
        materialise(params, day, erp_url=cfg.source("erp").url,
                    landing=Path(cfg.source("inventory_drop").landing_dir), api_file=api_file(home))
        airflow("dags", "test", "retail_daily", day.isoformat(), env=env)
        print(f"  {day}  retail_daily succeeded through Airflow ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        if day == days[0]:
            # retail_train fires weekly on the morning after the data it trains on; here once,
            # after the initial load, so the daily runs that follow have a champion to score with
            t0 = time.perf_counter()
            airflow("dags", "test", "retail_train", (day + timedelta(days=1)).isoformat(), env=env)
            print(f"  {day}  retail_train succeeded through Airflow ({time.perf_counter() - t0:.0f} s)",
                  flush=True)


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
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = ["", "=== lakehouse demo: summary ===",
             "views per schema: " + ", ".join(f"{s}={n}" for s, n in layers)]
    lines += [f"  {t:<32} {n:>10,} rows" for t, n in rows.items()]
    lines += ["quarantined by rule: " + "; ".join(f"{e}/{r}: {n}" for e, r, n in by_rule)]
    lines += [f"closed-account versions in dim_customer: {late[0]}, inferred customers: {late[1]}"]
    lines += [f"latest challenger {model[0]}: WAPE {model[1]:.3f} vs seasonal-naive {model[2]:.3f} "
              f"({model[3]:.0%} better), scikit-learn HistGBM {model[4]:.3f}; serving champion: {champion}",
              f"  rolling-origin CV over {model[7]:.0f} folds: WAPE {model[5]:.3f} vs seasonal-naive {model[6]:.3f}",
              "stockout risk (gold.rpt_stockout_risk): " + ", ".join(f"{r}={n}" for r, n in risk),
              f"peak memory of one pipeline process: {peak:,.0f} MiB",
              f"DuckDB catalog: {cfg.catalog_path}",
              "  .venv/bin/lakehouse sql \"SELECT category, sum(revenue) FROM "
              "gold.agg_sales_category_warehouse_daily GROUP BY 1 ORDER BY 2 DESC\"",
              "Airflow UI: make airflow-ui, then http://localhost:8080 (user admin, password in "
              ".airflow/simple_auth_manager_passwords.json.generated)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3, help="daily runs after the initial load")
    parser.add_argument("--home", type=Path, default=PROJECT)
    parser.add_argument("--api-port", type=int, default=8765)
    parser.add_argument("--sources-only", type=date.fromisoformat, metavar="DATE", default=None,
                        help="only make the sources look as they do at the end of DATE (containers' init)")
    args = parser.parse_args()
    cfg = load_domain(CONFIG_DIR)
    if args.sources_only:
        print(materialise(SimulationParams(end=args.sources_only), args.sources_only,
                          erp_url=cfg.source("erp").url, api_file=api_file(args.home),
                          landing=Path(cfg.source("inventory_drop").landing_dir)))
        return
    days = [cfg.start_date + timedelta(days=i) for i in range(args.days + 1)]
    params = SimulationParams(end=days[-1])
    env = airflow_env(args.home, RETAIL_API_URL=f"http://127.0.0.1:{args.api_port}")
    t0 = time.perf_counter()
    print(f"Airflow metadata DB: {env['AIRFLOW_HOME']} (SQLite)", flush=True)
    airflow("db", "migrate", env=env)
    api = start_api(args.home, args.api_port)
    try:
        print(f"Running retail_daily for {days[0]} (initial load) .. {days[-1]}", flush=True)
        run_days(args.home, days, params, env)
    finally:
        api.terminate()
    print(summary(args.home))
    print(f"total demo time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
