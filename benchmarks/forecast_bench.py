"""The forecast's real training and scoring steps at seed scale, over a silver of two years.

``forecast.train`` and ``forecast.score`` run as the pipeline runs them (the same SQL over
``silver.stg_order_lines``, ``stg_orders``, ``stg_promotions``, ``gold.dim_date`` and
``gold.dim_product``, the same registry and gold tables), each in its own process so that
its peak RSS is its own. The silver tables are written straight from the simulator's days
(a line per SKU x warehouse x day that sold, an order holding the lines of 10 neighbouring
SKUs of a warehouse, a day's batch a partition, promotions announced 14 days ahead), which skips the minutes-per-day pipeline load: this
bench measures the ML steps, not bronze to gold.

    python -m benchmarks.forecast_bench                       # seed scale, 730 days
    python -m benchmarks.forecast_bench --skus 2000 --history-days 400
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

END = date(2026, 11, 3)
RUN_DATE = END - timedelta(days=7)  # the day trained and scored for
HOLDOUT_FROM = RUN_DATE - timedelta(days=27)  # the training holdout's first day (ml.holdout_days 28)
TABLES = ("stg_order_lines", "stg_orders", "stg_promotions")


def simulate(home: Path, skus: int, warehouses: int, history_days: int) -> dict:
    """Write the silver tables of ``history_days`` simulated days under ``home``, a day at a time."""
    import holidays as holidays_lib

    from pipelines.retail.simulator import RetailWorld, SimulationParams

    params = SimulationParams(n_skus=skus, n_warehouses=warehouses, n_customers=10,
                              history_start=END - timedelta(days=history_days - 1), end=END)
    world = RetailWorld(params)
    base = world._product_base.select("product_id", "category", "unit_price")
    products = base["product_id"].gather(np.repeat(np.arange(skus), warehouses))
    wh = world.warehouses["warehouse_id"].gather(np.tile(np.arange(warehouses), skus))
    price = np.repeat(base["unit_price"].to_numpy(), warehouses)
    state, lines, truth = world.initial_state(), 0, []
    while state.day < params.end:
        day = world.live(state, state.day + timedelta(days=1))
        units = day.units.ravel()
        if HOLDOUT_FROM - timedelta(days=7) <= day.day <= RUN_DATE:  # the holdout and a week before
            truth.append(pl.DataFrame({"date": [day.day] * units.size, "product_id": products,
                                       "warehouse_id": wh, "units": units.astype(np.float64),
                                       "rate": world.demand_rate(day.day, day.discount).ravel()}))
        sold = np.flatnonzero(units > 0)
        at = datetime(day.day.year, day.day.month, day.day.day, 12)
        ids = pl.Series([f"{day.day:%Y%m%d}-{i}" for i in sold])
        # an order holds the lines of 10 neighbouring SKUs of one warehouse
        orders = pl.Series([f"{day.day:%Y%m%d}-{i // warehouses // 10}-{i % warehouses}" for i in sold])
        disc = np.repeat(day.discount, warehouses)[sold]
        frames = {
            "stg_order_lines": pl.DataFrame({
                "order_line_id": ids, "order_id": orders, "product_id": products.gather(sold),
                "warehouse_id": wh.gather(sold), "quantity": units[sold].astype(np.int64),
                "discount_pct": disc, "unit_price": (price[sold] * (1 - disc)).round(2)}),
            "stg_orders": pl.DataFrame({"order_id": orders.unique(maintain_order=True)}).with_columns(
                ordered_at=pl.lit(at)),
        }
        promoted = np.flatnonzero(day.discount > 0)
        frames["stg_promotions"] = pl.DataFrame({
            "promotion_id": [f"P{day.day:%Y%m%d}-{i}" for i in promoted],
            "product_id": base["product_id"].gather(promoted),
            "discount_pct": day.discount[promoted]}).with_columns(
                starts_on=pl.lit(day.day), ends_on=pl.lit(day.day),
                updated_at=pl.lit(at - timedelta(days=14)))
        for table, frame in frames.items():
            known = day.day - timedelta(days=14) if table == "stg_promotions" else day.day
            folder = home / "silver" / table / f"ingest_date={known}"
            folder.mkdir(parents=True, exist_ok=True)
            frame = frame.with_columns(updated_at=pl.lit(at)) if "updated_at" not in frame.columns else frame
            frame.write_parquet(folder / f"{day.day}.parquet")
        lines += sold.size
    pl.concat(truth).write_parquet(home / "demand_truth.parquet")
    hol = holidays_lib.country_holidays("FR", years=range(params.history_start.year, END.year + 2))
    days = pl.date_range(params.history_start, END + timedelta(days=60), eager=True)
    gold = home / "gold"
    gold.mkdir(exist_ok=True)
    pl.DataFrame({"date": days}).with_columns(
        is_holiday=pl.col("date").is_in(list(hol.keys())), day_of_week=pl.col("date").dt.weekday(),
        month=pl.col("date").dt.month()).write_parquet(gold / "dim_date.parquet")
    base.select("product_id", "category", "unit_price").with_columns(
        valid_from=pl.lit(datetime(2000, 1, 1)), valid_to=pl.lit(None, dtype=pl.Datetime("us"))
    ).write_parquet(gold / "dim_product.parquet")
    return {"order_lines": lines, "series": skus * warehouses, "days": history_days}


def floor(home: Path) -> dict:
    """The WAPE of the simulator's own expected demand over the training holdout's days, every
    series: the floor any model of the sold units faces (demand is Poisson around that rate,
    and sales are capped by stock). ``median``: the Poisson median of the true rate, the best
    point forecast for an absolute error; ``seasonal_naive``: last week's units, as trained."""
    from scipy.stats import poisson

    truth = pl.read_parquet(home / "demand_truth.parquet").sort("product_id", "warehouse_id", "date")
    truth = truth.with_columns(
        seasonal_naive=pl.col("units").shift(7).over("product_id", "warehouse_id"),
        median=pl.Series(poisson.median(truth["rate"].to_numpy()), dtype=pl.Float64).fill_nan(0),
    ).filter(pl.col("date") >= HOLDOUT_FROM)
    wape = {m: round(float((truth[m] - truth["units"]).abs().sum() / truth["units"].sum()), 4)
            for m in ("seasonal_naive", "rate", "median")}
    return {"rows": truth.height, "wape": wape,
            "better_than_naive": {m: round(1 - w / wape["seasonal_naive"], 4) for m, w in wape.items()}}


def catalog(home: Path) -> Path:
    """A DuckDB file of views over the bench's silver and gold files, as the catalog serves them."""
    import duckdb

    path = home / "catalog.duckdb"
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA silver; CREATE SCHEMA gold")
        for table in TABLES:
            con.execute(f"CREATE VIEW silver.{table} AS SELECT * FROM read_parquet("
                        f"'{home}/silver/{table}/*/*.parquet', hive_partitioning = true)")
        for table in ("dim_date", "dim_product"):
            con.execute(f"CREATE VIEW gold.{table} AS SELECT * FROM read_parquet('{home}/gold/{table}.parquet')")
    return path


def _cfg(home: Path):
    os.environ["LAKEHOUSE_HOME"] = str(home / "lakehouse")
    from lakehouse.config import load_domain

    return load_domain(Path(__file__).resolve().parents[1] / "configs" / "retail")


def step(name: str, home: Path) -> dict:
    """Run one ML step in this process; its figures go to stdout as JSON."""
    import duckdb

    from lakehouse import registry
    from pipelines.retail import forecast

    cfg = _cfg(home)
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    con.execute(f"SET memory_limit = '{cfg.ml.duckdb_memory_limit}'")  # as tasks.train and score_date
    t0 = time.perf_counter()
    if name == "train":
        result = forecast.train(cfg, con, RUN_DATE)
        out = {k: result[k] for k in ("challenger", "wape", "wape_seasonal_naive", "wape_sklearn_hist_gbm",
                                      "cv_wape_xgboost", "cv_wape_seasonal_naive", "cv_wape_sklearn_hist_gbm",
                                      "holdout_rows", "improvement_vs_seasonal_naive")}
    else:
        version = registry.champion(cfg.lake, forecast.MODEL_NAME)
        row = registry.version_row(cfg.lake, forecast.MODEL_NAME, version)
        out = {"forecast_rows": forecast.score(cfg, con, RUN_DATE, version, row["artifact"])}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=10_247)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--home", type=Path, default=Path("data/bench_forecast"))
    parser.add_argument("--reuse", action="store_true", help="keep the silver written by an earlier run")
    parser.add_argument("--step", choices=["train", "score"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = args.home.resolve()
    if args.step:
        print(json.dumps(step(args.step, home)))
        return
    figures: dict = {"scale": {"skus": args.skus, "warehouses": args.warehouses, "history_days": args.history_days}}
    if not args.reuse:
        shutil.rmtree(home, ignore_errors=True)
        t0 = time.perf_counter()
        figures["silver"] = simulate(home, args.skus, args.warehouses, args.history_days)
        figures["simulate_s"] = round(time.perf_counter() - t0, 1)
        print(f"silver written in {figures['simulate_s']} s: {figures['silver']}", flush=True)
    catalog(home)
    shutil.rmtree(home / "lakehouse", ignore_errors=True)
    for name in ("train", "score"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.forecast_bench", "--step", name,
                              "--home", str(home)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{name} failed:\n{out.stderr[-4000:]}")
        figures[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, figures[name], flush=True)
    if (home / "demand_truth.parquet").exists():
        figures["floor"] = floor(home)
        print("floor", figures["floor"], flush=True)
    (home / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
