"""Demand forecasting for the retail domain: features from the gold star schema, train, score.

The forecast is direct: every feature of a target day uses only data at least
``horizon`` (7) days old, so one model serves every day of the 7-day horizon and
never sees the future. Promotions and holidays count as known in advance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import polars as pl

from lakehouse import ml, registry, storage
from lakehouse.config import DomainConfig

log = logging.getLogger(__name__)
MODEL_NAME = "retail_demand_xgb"
# the catalog's comments of the gold tables this module writes (lakehouse.docs)
DOCS = {
    "fct_demand_forecast": ("Daily 7-day demand forecast per SKU and warehouse, by the serving champion", {
        "forecast_date": "Day the forecast was made (the run's business date)",
        "target_date": "Day the forecast is for (1 to 7 days after forecast_date)",
        "date_sk": "Surrogate key of the target date in dim_date",
        "product_id": "SKU", "warehouse_id": "Warehouse the demand ships from",
        "model_version": "The ml_models version that made the forecast (the champion serving that day)",
        "predicted_units": "Units the model predicts for the target date (never negative)",
    }),
    "ml_model_metrics": ("Accuracy of every trained version and its baselines, per fold and segment", {
        "model_version": "The version trained (ml_models)",
        "model": "xgboost or a baseline (seasonal_naive, moving_average_28, sklearn_hist_gbm)",
        "fold": "cv_1 .. cv_n: a rolling-origin fold (the last one is the holdout)",
        "origin": "Last training date of the fold", "segment_type": "all, category or warehouse",
        "segment": "The category or warehouse (all: every series)", "rows": "SKU x warehouse x days scored",
        "wape": "Weighted absolute percentage error: sum|error| / sum actual units",
        "mae": "Mean absolute error (units)", "bias": "Mean error (units; positive: over-forecast)",
    }),
    "ml_feature_drift": ("Feature drift of each scoring day against the champion's training data", {
        "forecast_date": "The scoring day", "model_version": "The champion that scored",
        "feature": "The feature compared", "psi": "Population stability index against training",
        "threshold": "The PSI above which the feature counts as drifted", "drifted": "psi > threshold",
        "rows": "Rows of the scoring day compared",
    }),
    "ml_drift_reference": ("The training distribution of each drift feature, per model version (PSI's bins)", {
        "model_version": "The version trained (ml_models)", "feature": "The feature profiled",
        "bin": "The bin's rank (0: lowest values)", "upper_edge": "Values of the bin are below it and at or above the previous bin's (null: no bound)",
        "share": "Share of the reference rows in the bin",
        "rows": "Reference rows with a value (the version's last drift_reference_days of training)",
    }),
    "ml_accuracy_monitor": ("Live accuracy of the champion against its holdout, per monitoring day", {
        "monitor_date": "Day the monitor ran", "model_version": "The champion monitored",
        "window_days": "Days of actuals the live WAPE covers", "rows": "Forecasts with actuals in the window",
        "live_wape": "WAPE of the window's forecasts against the units actually sold",
        "holdout_wape": "WAPE the version had on its holdout when it was trained",
        "degradation": "live_wape / holdout_wape - 1", "threshold": "Degradation above which it alerts",
        "degraded": "degradation > threshold (an alert was sent)",
    }),
}
LAGS = [7, 14, 21, 28, 364]
# lag_364 is a point lookup the frame's SQL makes (``units_364``): the frame of a day to
# predict then needs only the days mean_28 reads (7 to 34 before), not a year of days
YEAR_LAG = 364
SHIFT_LAGS = [k for k in LAGS if k != YEAR_LAG]
# the days before a row its features read from the frame's rows (mean_28: days 7 to 34 before)
LOOKBACK_DAYS = max(*SHIFT_LAGS, 7 + 28 - 1)
FEATURES = [f"lag_{k}" for k in LAGS] + [
    "mean_7", "mean_28", "day_of_week", "month", "doy_sin", "doy_cos", "is_holiday",
    "holiday_tomorrow", "discount", "category_code", "warehouse_code", "price",
]

# Drift is watched on features that come from data; calendar features move by construction.
DRIFT_FEATURES = [f"lag_{k}" for k in LAGS] + ["mean_7", "mean_28", "price"]

# Facts as they were known at the cutoff: validated batches ingested up to it, latest
# version of each line among those. A correction that arrives later never leaks into a
# model trained for an earlier day, and rerunning that day trains the same model.
#
# The daily frame (series x days) is built a chunk of series at a time (ADR 0030): the
# series are hashed into BUCKETS buckets, a chunk is a range of buckets, and training keeps
# a prefix of them when the whole frame would pass ``max_train_rows``. Memory follows the
# chunk, not the history or the number of series. The sold units per series and day are
# aggregated once per run into a temporary table the chunks read.
BUCKETS = 1024

SERIES_SQL = f"""
CREATE OR REPLACE TEMP TABLE demand_series AS
SELECT product_id, warehouse_id,
       (('0x' || md5(product_id || '|' || warehouse_id)[1:8])::UBIGINT % {BUCKETS})::INTEGER AS bucket
FROM silver.stg_order_lines WHERE ingest_date <= $known_at GROUP BY ALL
"""  # the first 32 bits of an md5: the same buckets in any tool and version

# The days a frame from ``since`` to ``until`` reads: its own and, for lag_364, the same days
# a year before. A line or an order is first extracted no earlier than the day before its
# order date (it cannot be read before it exists; a day of slack for time zones), so only the
# batches ingested from the day before the first of them are read: older years are pruned.
# Lines are kept to the orders of those days before their versions are ranked (a line never
# moves to another order): a year of batches is scanned for its order ids, not ranked.
SALES_SQL = """
CREATE OR REPLACE TEMP TABLE demand_sales_unsorted AS
WITH orders AS (
    SELECT order_id, ordered_at::DATE AS date FROM silver.stg_orders
    WHERE ingest_date <= $known_at AND ingest_date >= $since - INTERVAL 365 DAY
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC, ingest_date DESC) = 1
),
needed AS (
    SELECT * FROM orders WHERE date <= $last_actual
      AND (date >= $since OR date BETWEEN $since - 364 AND $until - 364)
),
lines AS (
    SELECT order_line_id, order_id, product_id, warehouse_id, quantity, discount_pct, unit_price
    FROM silver.stg_order_lines
    WHERE ingest_date <= $known_at AND ingest_date >= $since - INTERVAL 365 DAY
      AND order_id IN (SELECT order_id FROM needed) AND {sampled}
    QUALIFY row_number() OVER (PARTITION BY order_line_id ORDER BY updated_at DESC, ingest_date DESC) = 1
)
SELECT s.bucket, x.* FROM (
    SELECT o.date, l.product_id, l.warehouse_id, sum(l.quantity)::BIGINT AS units,
           max(l.discount_pct) AS discount,
           round(avg(l.unit_price), 4) AS price  -- rounded: float sums vary with thread order
    FROM lines l JOIN needed o USING (order_id)
    GROUP BY ALL
) x JOIN demand_series s USING (product_id, warehouse_id)
"""
# Sorted by bucket, a chunk's rows are a few row groups (min/max pruning): 1.3 s a chunk instead
# of 3.2 at seed scale. A separate statement: sorting within SALES_SQL ran out of a 2 GB limit.
SORT_SALES_SQL = """
CREATE OR REPLACE TEMP TABLE demand_sales AS SELECT * FROM demand_sales_unsorted ORDER BY bucket;
DROP TABLE demand_sales_unsorted
"""

# the promotions calendar as known at the cutoff: the business plans promotions ahead, so the
# days to predict carry their discounts (sold lines show them only once the day is past)
PROMOS_SQL = """
CREATE OR REPLACE TEMP TABLE demand_promos AS
SELECT p.product_id, d.date, max(p.discount_pct) AS discount
FROM (SELECT * FROM silver.stg_promotions WHERE ingest_date <= $known_at
      QUALIFY row_number() OVER (PARTITION BY promotion_id ORDER BY updated_at DESC, ingest_date DESC) = 1) p,
     LATERAL (SELECT unnest(generate_series(p.starts_on, p.ends_on, INTERVAL 1 DAY))::DATE AS date) d
WHERE d.date >= $since
GROUP BY ALL
"""
NO_PROMOS_SQL = """
CREATE OR REPLACE TEMP TABLE demand_promos AS
SELECT NULL::VARCHAR AS product_id, NULL::DATE AS date, NULL::DOUBLE AS discount WHERE false
"""

FRAME_SQL = """
WITH series AS (SELECT product_id, warehouse_id FROM demand_series WHERE bucket >= $lo AND bucket < $hi),
days AS (SELECT date, is_holiday, day_of_week, month FROM gold.dim_date WHERE date >= $first AND date <= $until),
category AS (
    SELECT product_id, category FROM gold.dim_product
    WHERE valid_from < $last_actual + INTERVAL 1 DAY
      AND (valid_to IS NULL OR valid_to >= $last_actual + INTERVAL 1 DAY)
),
-- the list price in force each day (the last one known for days after the cutoff)
list_price AS (
    SELECT p.product_id, d.date, max(p.unit_price) AS list_price
    FROM (SELECT DISTINCT product_id FROM series) s JOIN gold.dim_product p USING (product_id), days d
    WHERE p.valid_from < least(d.date, $last_actual) + INTERVAL 1 DAY
      AND (p.valid_to IS NULL OR p.valid_to >= least(d.date, $last_actual) + INTERVAL 1 DAY)
    GROUP BY ALL
)
SELECT s.product_id, s.warehouse_id, d.date, d.is_holiday, d.day_of_week, d.month,
       CASE WHEN d.date <= $last_actual THEN coalesce(x.units, 0) END AS units,
       CASE WHEN d.date - 364 >= $history_first THEN coalesce(y.units_364, 0) END AS units_364,
       coalesce(x.discount, p.discount, 0) AS discount,
       -- what a unit sold for that day, else what it would have: the list price less the discount
       coalesce(x.price, round(lp.list_price * (1 - coalesce(x.discount, p.discount, 0)), 4)) AS price,
       c.category
FROM series s CROSS JOIN days d
LEFT JOIN (SELECT * FROM demand_sales WHERE bucket >= $lo AND bucket < $hi) x USING (product_id, warehouse_id, date)
LEFT JOIN (SELECT product_id, warehouse_id, date + 364 AS date, units AS units_364 FROM demand_sales
           WHERE bucket >= $lo AND bucket < $hi) y USING (product_id, warehouse_id, date)
LEFT JOIN demand_promos p USING (product_id, date)
LEFT JOIN category c USING (product_id)
LEFT JOIN list_price lp USING (product_id, date)
ORDER BY s.product_id, s.warehouse_id, d.date
"""


@dataclass(frozen=True)
class Demand:
    """The daily frame of one run, ready to be read a chunk of series at a time. It reads the
    connection's temporary tables: only the last ``prepare_demand`` of a connection is current."""

    con: duckdb.DuckDBPyConnection
    last_actual: date
    until: date
    first: date | None  # the frame's first day (None: nothing sold yet)
    history_first: date | None  # the first order's day: lag_364 is null before it plus a year
    bucket_series: dict[int, int]  # series per bucket, only the buckets kept
    kept_buckets: int  # buckets [0, kept_buckets) are in the frame (all of them unless sampled)
    categories: list[str]  # every category of the frame, sorted: codes stable across chunks

    @property
    def days(self) -> int:
        return (self.until - self.first).days + 1 if self.first else 0

    @property
    def series(self) -> int:
        return sum(self.bucket_series.values())

    def chunks(self, chunk_rows: int) -> list[tuple[int, int]]:
        """Ranges of buckets ``[lo, hi)`` of at most ``chunk_rows`` frame rows each (or one bucket)."""
        ranges, lo, rows = [], None, 0
        for bucket in sorted(self.bucket_series):
            size = self.bucket_series[bucket] * self.days
            if lo is not None and rows + size > chunk_rows:
                ranges.append((lo, bucket))
                lo, rows = None, 0
            if lo is None:
                lo = bucket
            rows += size
        if lo is not None or not ranges:
            ranges.append((lo or 0, self.kept_buckets))
        return ranges

    def frame(self, lo: int = 0, hi: int | None = None) -> pl.DataFrame:
        """The daily frame of the series in buckets ``[lo, hi)``, sorted by series and date."""
        hi = self.kept_buckets if hi is None else min(hi, self.kept_buckets)
        params = {"lo": lo, "hi": hi, "first": self.first, "until": self.until, "last_actual": self.last_actual,
                  "history_first": self.history_first}
        frame = self.con.sql(FRAME_SQL, params=params).pl()
        return frame.with_columns(category=pl.col("category").cast(pl.Enum(self.categories)))

    def frames(self, chunk_rows: int):
        """Each chunk's daily frame in turn (the frames of all chunks together are the whole frame)."""
        for lo, hi in self.chunks(chunk_rows):
            yield self.frame(lo, hi)


def prepare_demand(con: duckdb.DuckDBPyConnection, *, last_actual: date, until: date,
                   known_at: date | None = None, since: date | None = None,
                   max_rows: int | None = None) -> Demand:
    """Aggregate the units sold per SKU x warehouse x day into the connection's temporary
    tables, from ``since`` (default: the first sale) to ``last_actual``; the frame runs to
    ``until``, later days with empty units.

    Only batches ingested by ``known_at`` (default ``last_actual``) count: what the pipeline
    knew that day. ``max_rows`` keeps the series of the first buckets whose frame stays
    within that many rows: a deterministic sample, the same on every rerun.
    """
    known_at = known_at or last_actual
    earliest = date(1, 1, 2)  # "no window": every batch counts
    con.execute(SERIES_SQL, {"known_at": known_at})
    per_bucket = dict(con.sql("SELECT bucket, count(*) FROM demand_series GROUP BY bucket").fetchall())
    first_order = con.sql("SELECT min(ordered_at)::DATE FROM silver.stg_orders WHERE ingest_date <= $known_at",
                          params={"known_at": known_at}).fetchall()[0][0]
    first = None if first_order is None else max(since or first_order, first_order)
    kept = BUCKETS
    if max_rows is not None and first is not None:
        days, rows, kept = (until - first).days + 1, 0, 0
        for bucket in range(BUCKETS):
            rows += per_bucket.get(bucket, 0) * days
            if rows > max_rows and kept:
                break
            kept = bucket + 1
    sampled = ("(product_id, warehouse_id) IN (SELECT product_id, warehouse_id FROM demand_series "
               f"WHERE bucket < {kept})" if kept < BUCKETS else "true")
    con.execute(SALES_SQL.format(sampled=sampled), {"known_at": known_at, "since": first or earliest,
                                                    "until": until, "last_actual": last_actual})
    con.execute(SORT_SALES_SQL)
    if since is None:  # the frame starts at the first sale, as the whole history always did
        first = con.sql("SELECT min(date) FROM demand_sales").fetchall()[0][0]
    has_calendar = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'silver' "
                               "AND table_name = 'stg_promotions'").fetchall()[0][0]
    if has_calendar:
        con.execute(PROMOS_SQL, {"known_at": known_at, "since": first or earliest})
    else:  # a lake loaded before the ERP had a calendar: no promotion is known in advance
        con.execute(NO_PROMOS_SQL)
    categories = [c for (c,) in con.sql(
        "SELECT DISTINCT category FROM gold.dim_product WHERE category IS NOT NULL ORDER BY 1").fetchall()]
    return Demand(con=con, last_actual=last_actual, until=until, first=first, history_first=first_order,
                  bucket_series={b: n for b, n in per_bucket.items() if b < kept}, kept_buckets=kept,
                  categories=categories)


def daily_demand(con: duckdb.DuckDBPyConnection, *, last_actual: date, until: date,
                 known_at: date | None = None) -> pl.DataFrame:
    """Units per SKU x warehouse x day up to ``last_actual`` (zeros filled, later rows empty),
    the whole frame at once: for small lakes and tests (``prepare_demand`` chunks it).

    Only batches ingested by ``known_at`` (default ``last_actual``) count: what the
    pipeline knew that day. A backtest passes a later ``known_at`` to look at past
    days with everything known now.
    """
    demand = prepare_demand(con, last_actual=last_actual, until=until, known_at=known_at)
    return demand.frame().sort("product_id", "warehouse_id", "date")


def features(daily: pl.LazyFrame) -> pl.LazyFrame:
    """Pure: daily demand -> model features. Every lag is at least 7 days old.

    ``daily`` holds every day of each series from its first row on (the lags shift rows), and
    ``units_364``: the units of 364 days before, looked up by the frame's SQL.
    """
    by = ["product_id", "warehouse_id"]
    units = pl.col("units").fill_null(0)
    # an Enum of every category (prepare_demand) codes a category the same in every chunk
    category = pl.col("category")
    code = (category.to_physical() + 1 if isinstance(daily.collect_schema()["category"], pl.Enum)
            else category.rank("dense"))
    doy = pl.col("date").dt.ordinal_day() * (2 * math.pi / 365.25)
    return daily.sort(*by, "date").with_columns(
        *[units.shift(k).over(by).alias(f"lag_{k}") for k in SHIFT_LAGS],
        pl.col("units_364").alias(f"lag_{YEAR_LAG}"),
        units.shift(7).rolling_mean(7).over(by).alias("mean_7"),
        units.shift(7).rolling_mean(28).over(by).alias("mean_28"),
        doy.sin().alias("doy_sin"), doy.cos().alias("doy_cos"),
        pl.col("is_holiday").cast(pl.Int8),
        pl.col("is_holiday").shift(-1).over(by).fill_null(False).cast(pl.Int8).alias("holiday_tomorrow"),
        code.cast(pl.Int32).alias("category_code"),  # stable across processes
        pl.col("warehouse_id").str.slice(2).cast(pl.Int32).alias("warehouse_code"),
    )


MODELS = ["xgboost", "seasonal_naive", "moving_average_28", "sklearn_hist_gbm"]


def _fit_and_score(feats: pl.DataFrame, origin: date, end: date, params: dict, seed: int):
    """Fit on dates <= origin, predict (origin, end] with XGBoost and every baseline."""
    train_set = feats.filter(pl.col("date") <= origin)
    test = feats.filter(pl.col("date").is_between(origin, end, closed="right"))
    model = ml.train_xgboost(train_set, features=FEATURES, target="units", params=params, seed=seed)
    scored = test.with_columns(
        xgboost=pl.Series(model.predict(test.select(FEATURES).to_numpy()).clip(0), dtype=pl.Float64),
        seasonal_naive=pl.col("lag_7").cast(pl.Float64),
        moving_average_28=pl.col("mean_28"),
        sklearn_hist_gbm=pl.Series(_sklearn_baseline(train_set, test, seed), dtype=pl.Float64),
    )
    return model, train_set, scored


def train(cfg: DomainConfig, con: duckdb.DuckDBPyConnection, run_date: date) -> dict:
    """Rolling-origin cross-validation, then the challenger: trained before the last window.

    The last ``holdout_days`` are the holdout the challenger and the champion are both
    judged on; ``cv_folds - 1`` earlier windows of the same length give the
    cross-validated WAPE of every model (``gold.ml_model_metrics``, ``fold`` cv_1..).
    """
    mlc = cfg.ml
    demand = prepare_demand(con, last_actual=run_date, until=run_date, max_rows=mlc.max_train_rows)
    parts = [features(frame.lazy()).drop_nulls(["lag_28", "mean_28"]).collect()
             for frame in demand.frames(mlc.chunk_rows)]
    # one order whatever the chunks: XGBoost's row subsampling depends on it
    feats = pl.concat(parts).sort("product_id", "warehouse_id", "date") if len(parts) > 1 else parts[0]
    total = con.sql("SELECT count(*) FROM demand_series").fetchall()[0][0]
    log.info("training on %d of %d series (%d rows; max_train_rows %d) from %s", demand.series, total,
             feats.height, mlc.max_train_rows, demand.first)
    data_hash = ml.frame_hash(feats.select("product_id", "warehouse_id", "date", "units", *FEATURES))
    params = dict(mlc.xgboost)
    version = hashlib.sha256(json.dumps([data_hash, params, mlc.seed, mlc.cv_folds],
                                        sort_keys=True).encode()).hexdigest()[:12]
    windows = ml.rolling_origins(run_date, folds=mlc.cv_folds, horizon_days=mlc.holdout_days)
    first_day = feats["date"].min()
    if first_day is None or first_day > windows[-1][0]:
        # said plainly: otherwise a model library fails on an empty array ("0 sample(s)")
        raise ValueError(
            f"not enough history to train for {run_date}: the first day with features is "
            f"{first_day or 'none'} (lag_28 and mean_28 need 5 weeks of sales before it), and the "
            f"{mlc.holdout_days}-day holdout starts after {windows[-1][0]}, so nothing is left to train on. "
            f"Load sales from {windows[-1][0] - timedelta(days=35 + 28)} or earlier (a month to train on at least)")
    windows = [w for w in windows[:-1] if first_day is not None and w[0] > first_day] + windows[-1:]
    metrics_frames, cv = [], {m: [] for m in MODELS}
    for i, (origin, end) in enumerate(windows, start=1):
        model, train_set, scored = _fit_and_score(feats, origin, end, params, mlc.seed)
        last = i == len(windows)
        fold = ml.segment_metrics(scored, actual="units", predictions=MODELS,
                                  segments=["category", "warehouse_id"] if last else [])
        metrics_frames.append(fold.with_columns(fold=pl.lit(f"cv_{i}"), origin=pl.lit(origin)))
        for r in fold.filter(pl.col("segment_type") == "all").iter_rows(named=True):
            cv[r["model"]].append(r["wape"])
    split, holdout = windows[-1][0], scored
    by_segment = pl.concat(metrics_frames)
    overall = {r["model"]: r for r in by_segment.filter(
        (pl.col("segment_type") == "all") & (pl.col("fold") == f"cv_{len(windows)}")).iter_rows(named=True)}
    metrics = {
        "wape": overall["xgboost"]["wape"], "mae": overall["xgboost"]["mae"], "bias": overall["xgboost"]["bias"],
        "wape_seasonal_naive": overall["seasonal_naive"]["wape"],
        "wape_moving_average_28": overall["moving_average_28"]["wape"],
        "wape_sklearn_hist_gbm": overall["sklearn_hist_gbm"]["wape"],
        "holdout_rows": float(holdout.height), "cv_folds": float(len(windows)),
        **{f"cv_wape_{m}": round(sum(v) / len(v), 6) for m, v in cv.items()},
    }
    metrics["improvement_vs_seasonal_naive"] = 1 - metrics["wape"] / metrics["wape_seasonal_naive"]
    # the drift reference is the model's own data: its last training days as it saw them; kept
    # beside it (before it is registered) so scoring never rebuilds the training days
    ref_from, ref_to = drift_window(cfg, split)
    profile = ml.drift_profile(feats.filter(pl.col("date").is_between(ref_from, ref_to)), DRIFT_FEATURES)
    storage.publish(profile, cfg.lake, "gold", "ml_drift_reference", {"model_version": version})
    ml.register(cfg.lake, model=model, version=version, run_date=run_date, features=FEATURES,
                params=params, metrics=metrics, data_hash=data_hash, name=MODEL_NAME,
                train_window=(train_set["date"].min(), split))
    storage.publish(by_segment, cfg.lake, "gold", "ml_model_metrics", {"model_version": version})
    promoted, reason = _challenge(cfg, version, holdout, metrics["wape"], run_date)
    serving = registry.champion(cfg.lake, MODEL_NAME)
    log.info("model %s: WAPE %.3f vs seasonal naive %.3f (CV %.3f vs %.3f over %d folds); %s; serving %s",
             version, metrics["wape"], metrics["wape_seasonal_naive"], metrics["cv_wape_xgboost"],
             metrics["cv_wape_seasonal_naive"], len(windows), reason, serving)
    return {"model_version": serving, "challenger": version, "promoted": promoted, "decision": reason,
            **metrics}


def drift_report(cfg: DomainConfig, reference: pl.DataFrame, scoring: pl.DataFrame) -> pl.DataFrame:
    """PSI of each drift feature: the scoring window against the model's latest training days
    (``reference``: the ``ml.drift_profile`` of the last ``drift_reference_days`` of its
    training window, ``drift_window``).

    The reference is the last days of the training window, not all of it: demand has a
    season and a trend, and a year-long reference would flag every summer as drift.
    """
    mlc = cfg.ml
    return ml.feature_drift(reference, scoring, DRIFT_FEATURES, mlc.psi_threshold, mlc.drift_min_rows)


def drift_window(cfg: DomainConfig, train_to: date) -> tuple[date, date]:
    """The days of a model's training window its drift is measured against."""
    return train_to - timedelta(days=cfg.ml.drift_reference_days - 1), train_to


def _monitor_drift(cfg: DomainConfig, reference: pl.DataFrame, scoring: pl.DataFrame, model_version: str,
                   run_date: date) -> pl.DataFrame:
    """Publish ``gold.ml_feature_drift`` for the day and alert on drifted features."""
    from lakehouse import alerts

    drift = drift_report(cfg, reference, scoring).with_columns(model_version=pl.lit(model_version))
    storage.publish(drift, cfg.lake, "gold", "ml_feature_drift", {"forecast_date": run_date.isoformat()})
    drifted = drift.filter(pl.col("drifted"))
    key = f"drift:{MODEL_NAME}"  # one incident while drift lasts, a recovery when it ends
    if drifted.height:
        alerts.notify(f":warning: feature drift for {MODEL_NAME} {model_version} on {run_date}: "
                      + ", ".join(f"{f} PSI {p:.2f}" for f, p in drifted.select("feature", "psi").iter_rows())
                      + f" (threshold {cfg.ml.psi_threshold}); consider retraining ({cfg.name}_train)", key=key)
    else:
        alerts.resolve(key, f":white_check_mark: no feature drift for {MODEL_NAME} on {run_date}.")
    return drift


def _monitor_accuracy(cfg: DomainConfig, run_date: date) -> pl.DataFrame | None:
    """Live WAPE of each serving version over the last days of actuals vs its holdout WAPE; alert."""
    from lakehouse import alerts

    mlc = cfg.ml
    acc = storage.scan(cfg.lake, "gold", "fct_forecast_accuracy", missing_ok=True)
    if acc is None:
        return None
    window = acc.filter(pl.col("target_date").is_between(
        run_date - timedelta(days=mlc.accuracy_window_days - 1), run_date))
    versions = registry.registered(cfg.lake, MODEL_NAME)
    baseline = dict(zip(versions["model_version"], versions["metric_wape"], strict=True)) if versions.height else {}
    report = ml.accuracy_degradation(window, baseline, threshold=mlc.wape_degradation,
                                     min_rows=mlc.accuracy_min_rows)
    if report.height == 0:
        return report
    report = report.with_columns(window_days=pl.lit(mlc.accuracy_window_days))
    storage.publish(report, cfg.lake, "gold", "ml_accuracy_monitor", {"monitor_date": run_date.isoformat()})
    for r in report.iter_rows(named=True):
        key = f"accuracy:{MODEL_NAME}:{r['model_version']}"
        if not r["degraded"]:
            if r["rows"] >= mlc.accuracy_min_rows:
                alerts.resolve(key, f":white_check_mark: {MODEL_NAME} {r['model_version']} accuracy is back "
                                    f"within +{mlc.wape_degradation:.0%} of its holdout.")
            continue
        alerts.notify(f":chart_with_downwards_trend: {MODEL_NAME} {r['model_version']} is degrading: live WAPE "
                      f"{r['live_wape']:.3f} over {mlc.accuracy_window_days} days ({r['rows']} forecasts) vs "
                      f"{r['holdout_wape']:.3f} on its holdout (+{r['degradation']:.0%}, threshold "
                      f"+{mlc.wape_degradation:.0%}); consider retraining ({cfg.name}_train)", key=key)
    return report


def _sklearn_baseline(train_set: pl.DataFrame, holdout: pl.DataFrame, seed: int):
    """A scikit-learn peer on the same features: histogram gradient boosting with its default
    settings (issue 19's yardstick: what a user gets from scikit-learn without tuning)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    usable = [f for f in FEATURES if train_set[f].null_count() < train_set.height]  # its binner needs values
    peer = HistGradientBoostingRegressor(random_state=seed)
    peer.fit(train_set.select(usable).to_numpy(), train_set["units"].to_numpy())
    return peer.predict(holdout.select(usable).to_numpy()).clip(0)


def _challenge(cfg: DomainConfig, challenger: str, holdout: pl.DataFrame, challenger_wape: float,
               run_date: date) -> tuple[bool, str]:
    """Score the champion on the challenger's holdout; promote the challenger only if it is better."""
    current = registry.champion(cfg.lake, MODEL_NAME)
    champion_wape = None
    if current == challenger:
        return False, "challenger is the champion already (same data, parameters and seed)"
    if current is not None:
        row = registry.version_row(cfg.lake, MODEL_NAME, current)
        feats = json.loads(row["features"])
        model = ml.load_model(cfg.lake, row["artifact"])
        champion_wape = ml.wape(holdout["units"], model.predict(holdout.select(feats).to_numpy()).clip(0))
    promote, reason = registry.decide(challenger_wape, champion_wape)
    if promote:
        # a model trained on data through D serves from D + 1: rescoring D keeps D's model
        registry.promote(cfg.lake, MODEL_NAME, challenger, reason=reason, on=run_date + timedelta(days=1))
    return promote, reason


def reference_profile(cfg: DomainConfig, con: duckdb.DuckDBPyConnection, row: dict) -> pl.DataFrame:
    """The drift profile of a registered version (``row``): the one training kept
    (``gold.ml_drift_reference``), or, for a version trained before profiles were kept, one
    built from its reference days as the lake knew them the day it was trained."""
    stored = storage.scan_partition(cfg.lake, "gold", "ml_drift_reference", {"model_version": row["model_version"]})
    if stored is not None:
        return stored.collect()
    log.info("model %s has no stored drift profile: building it from its training days", row["model_version"])
    return ml.drift_profile(drift_reference(cfg, con, row["train_to"], known_at=row["trained_for_date"]),
                            DRIFT_FEATURES)


def drift_reference(cfg: DomainConfig, con: duckdb.DuckDBPyConnection, train_to: date,
                    known_at: date) -> pl.DataFrame:
    """The drift features of a model's reference days (``drift_window``) as the lake knew them at
    ``known_at``, for a fixed sample of series within ``max_train_rows`` frame rows (ADR 0030):
    the rows training keeps (full ``lag_28`` and ``mean_28``), rebuilt from a window."""
    ref_from, ref_to = drift_window(cfg, train_to)
    demand = prepare_demand(con, last_actual=ref_to, until=ref_to, known_at=known_at,
                            since=ref_from - timedelta(days=LOOKBACK_DAYS), max_rows=cfg.ml.max_train_rows)
    return pl.concat([features(frame.lazy()).filter(pl.col("date") >= ref_from).drop_nulls(["lag_28", "mean_28"])
                      .select(DRIFT_FEATURES).collect() for frame in demand.frames(cfg.ml.chunk_rows)])


def score(cfg: DomainConfig, con: duckdb.DuckDBPyConnection, run_date: date, model_version: str,
          artifact: str) -> int:
    """Forecast ``horizon_days`` after ``run_date`` for every SKU x warehouse; one partition per date.

    The frame starts ``LOOKBACK_DAYS`` before the first day it predicts and is built and
    scored a chunk of series at a time (ADR 0030).
    """
    mlc = cfg.ml
    row = registry.version_row(cfg.lake, MODEL_NAME, model_version)
    reference = reference_profile(cfg, con, row)
    demand = prepare_demand(con, last_actual=run_date, until=run_date + timedelta(days=mlc.horizon_days),
                            since=run_date + timedelta(days=1 - LOOKBACK_DAYS))
    model = ml.load_model(cfg.lake, artifact)
    scored = []
    for frame in demand.frames(mlc.chunk_rows):
        feats = features(frame.lazy()).filter(pl.col("date") > run_date).collect()
        pred = model.predict(feats.select(FEATURES).to_numpy()).clip(0)
        # forecast_date is the partition key, so it is not repeated inside the file
        scored.append(feats.select(
            pl.col("date").alias("target_date"),
            pl.col("date").dt.strftime("%Y%m%d").cast(pl.Int32).alias("date_sk"),
            "product_id", "warehouse_id", *DRIFT_FEATURES,
        ).with_columns(predicted_units=pl.Series(pred.round(3), dtype=pl.Float64)))
    out = pl.concat(scored).sort("product_id", "warehouse_id", "target_date")
    _monitor_drift(cfg, reference, out.select(DRIFT_FEATURES), model_version, run_date)
    _monitor_accuracy(cfg, run_date)
    out = out.drop(DRIFT_FEATURES).with_columns(model_version=pl.lit(model_version))
    storage.publish(out, cfg.lake, "gold", "fct_demand_forecast", {"forecast_date": run_date.isoformat()})
    return out.height
