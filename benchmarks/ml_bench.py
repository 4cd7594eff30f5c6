"""``make bench``: forecast training time and batch-scoring throughput, at seed scale by default.

Demand comes straight from the simulator (10,247 SKUs x 12 warehouses at seed scale)
in the shape ``forecast.daily_demand`` returns, so the bench measures the ML steps
themselves: feature building (Polars, lazy), XGBoost training on the last
``--train-days`` days, and scoring the 7-day horizon of every SKU x warehouse.

Machines are noisy, so every figure comes with a baseline measured in the same run:
scikit-learn's HistGradientBoostingRegressor on the same rows (training and scoring)
and the seasonal-naive forecast (a column copy in Polars) for scoring.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from datetime import date, timedelta

import holidays as holidays_lib
import numpy as np
import polars as pl

from lakehouse import ml
from pipelines.retail import forecast
from pipelines.retail.simulator import RetailWorld, SimulationParams


def demand_frame(params: SimulationParams) -> pl.DataFrame:
    """Units per SKU x warehouse x day with the columns ``forecast.features`` expects."""
    world = RetailWorld(params)
    base = world._product_base.select("product_id", "category", "unit_price")
    hol = holidays_lib.country_holidays("FR", years=range(params.history_start.year, params.end.year + 2))
    state, frames = world.initial_state(), []
    n_s, n_w = params.n_skus, params.n_warehouses
    products = base["product_id"].gather(np.repeat(np.arange(n_s), n_w))
    warehouses = world.warehouses["warehouse_id"].gather(np.tile(np.arange(n_w), n_s))
    while state.day < params.end:  # one day at a time, as the sources receive them
        day = world.live(state, state.day + timedelta(days=1))
        frames.append(pl.DataFrame({
            "date": pl.Series([day.day], dtype=pl.Date).gather(np.zeros(n_s * n_w, dtype=np.int64)),
            "product_id": products, "warehouse_id": warehouses, "units": day.units.ravel(),
            "discount": np.repeat(day.discount, n_w)}))
    daily = pl.concat(frames)
    return (daily.join(base, on="product_id")
            .with_columns(price=(pl.col("unit_price") * (1 - pl.col("discount"))).round(4),
                          is_holiday=pl.col("date").is_in(list(hol.keys())),
                          day_of_week=pl.col("date").dt.weekday(), month=pl.col("date").dt.month())
            .drop("unit_price").sort("product_id", "warehouse_id", "date"))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skus", type=int, default=10_247)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--history-days", type=int, default=400, help="days simulated (lags need 364)")
    parser.add_argument("--train-days", type=int, default=28, help="most recent days trained on")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    end = date(2026, 11, 3)
    params = SimulationParams(n_skus=args.skus, n_warehouses=args.warehouses, n_customers=10,
                              history_start=end - timedelta(days=args.history_days - 1), end=end)
    cfg_params = {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.05, "subsample": 0.8,
                  "colsample_bytree": 0.8}
    horizon = 7
    print(f"simulating {args.skus:,} SKUs x {args.warehouses} warehouses x {args.history_days} days ...", flush=True)
    daily, t_sim = timed(lambda: demand_frame(params))
    cutoff = end - timedelta(days=horizon)  # the last 7 days play the future to score
    history = daily.with_columns(units=pl.when(pl.col("date") <= cutoff).then(pl.col("units"))).with_columns(
        units_364=pl.col("units").fill_null(0).shift(forecast.YEAR_LAG).over("product_id", "warehouse_id"))
    first = cutoff - timedelta(days=args.train_days - 1)
    # the window functions see the whole history; only the rows trained on and scored are kept
    feats, t_feat = timed(lambda: forecast.features(history.lazy()).filter(pl.col("date") >= first).collect())
    train_set = feats.filter(pl.col("date").is_between(cutoff - timedelta(days=args.train_days - 1), cutoff))
    train_set = train_set.drop_nulls(["lag_28", "mean_28"])
    score_set = feats.filter(pl.col("date") > cutoff)
    print(f"features over {daily.height:,} rows in {t_feat:.1f} s; training on {train_set.height:,} rows", flush=True)

    model, t_xgb = timed(lambda: ml.train_xgboost(train_set, features=forecast.FEATURES, target="units",
                                                  params=cfg_params, seed=42))
    from sklearn.ensemble import HistGradientBoostingRegressor

    usable = [f for f in forecast.FEATURES if train_set[f].null_count() < train_set.height]
    peer = HistGradientBoostingRegressor(random_state=42)  # default settings, as the training peer
    _, t_hgb = timed(lambda: peer.fit(train_set.select(usable).to_numpy(), train_set["units"].to_numpy()))
    x_score = score_set.select(forecast.FEATURES).to_numpy()
    pred, t_score = timed(lambda: model.predict(x_score))
    _, t_score_hgb = timed(lambda: peer.predict(score_set.select(usable).to_numpy()))
    _, t_naive = timed(lambda: score_set.select(pl.col("lag_7").cast(pl.Float64)).to_series().to_numpy())
    actual = daily.filter(pl.col("date") > cutoff).sort("product_id", "warehouse_id", "date")["units"]
    ordered = score_set.select("product_id", "warehouse_id", "date").with_columns(p=pl.Series(pred.clip(0)))
    ordered = ordered.sort("product_id", "warehouse_id", "date")
    naive = score_set.sort("product_id", "warehouse_id", "date")["lag_7"]
    rows = score_set.height
    figures = {
        "scale": {"skus": args.skus, "warehouses": args.warehouses, "series": args.skus * args.warehouses,
                  "history_days": args.history_days, "train_rows": train_set.height, "scored_rows": rows},
        "simulate_s": round(t_sim, 2),
        "features_input_rows_per_s": round(daily.height / t_feat),
        "train_xgboost_s": round(t_xgb, 2),
        "train_hist_gbm_s": round(t_hgb, 2),
        "train_ratio_xgboost_vs_hist_gbm": round(t_xgb / t_hgb, 2),
        "score_xgboost_rows_per_s": round(rows / t_score),
        "score_hist_gbm_rows_per_s": round(rows / t_score_hgb),
        "score_ratio_xgboost_vs_hist_gbm": round(t_score_hgb / t_score, 2),
        "score_ratio_xgboost_vs_seasonal_naive": round(t_naive / t_score, 4),
        "wape_xgboost": round(ml.wape(actual, ordered["p"]), 4),
        "wape_seasonal_naive": round(ml.wape(actual, naive.fill_null(0)), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if math.isfinite(figures["wape_seasonal_naive"]) and figures["wape_seasonal_naive"]:
        figures["improvement_vs_seasonal_naive"] = round(1 - figures["wape_xgboost"] / figures["wape_seasonal_naive"], 4)
    print(json.dumps(figures, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
