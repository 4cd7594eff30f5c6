from datetime import date, timedelta

import numpy as np
import polars as pl

from pipelines.retail.forecast import FEATURES, features


def _daily(units: np.ndarray) -> pl.LazyFrame:
    n = units.size
    return pl.LazyFrame({
        "product_id": ["SKU000001"] * n, "warehouse_id": ["WH01"] * n,
        "date": [date(2025, 1, 1) + timedelta(days=i) for i in range(n)],
        "is_holiday": [False] * n, "day_of_week": [1] * n, "month": [1] * n,
        "units": units, "units_364": np.concatenate([np.full(364, np.nan), units[:-364]])[:n],
        "discount": [0.0] * n, "price": [1.0] * n, "category": ["dairy"] * n,
    }).with_columns(pl.col("units_364").fill_nan(None))


def test_features_of_a_day_ignore_the_last_six_days_and_the_day_itself():
    rng = np.random.default_rng(0)
    units = rng.poisson(5, 400).astype(float)
    target = 390
    changed = units.copy()
    changed[target - 6:] = 1000  # anything after the forecast origin (target - 7)
    a = features(_daily(units)).collect().row(target, named=True)
    b = features(_daily(changed)).collect().row(target, named=True)
    assert {f: a[f] for f in FEATURES} == {f: b[f] for f in FEATURES}
    assert a["lag_7"] == units[target - 7]


def test_psi_is_near_zero_for_the_same_distribution_and_large_after_a_shift():
    import numpy as np

    from lakehouse.ml import drift_profile, feature_drift, psi

    rng = np.random.default_rng(0)
    base = rng.normal(10, 2, 5000)
    assert psi(base, rng.normal(10, 2, 2000)) < 0.05
    assert psi(base, rng.normal(13, 2, 2000)) > 0.2  # a price regime change
    train = pl.DataFrame({"price": base, "lag_7": base})
    now = pl.DataFrame({"price": rng.normal(13, 2, 2000), "lag_7": rng.normal(10, 2, 2000)})
    drift = feature_drift(drift_profile(train, ["price", "lag_7"]), now, ["price", "lag_7"])
    assert drift.filter(pl.col("drifted"))["feature"].to_list() == ["price"]


def test_the_days_to_predict_carry_the_promotions_known_at_the_cutoff():
    """Sold lines show a discount only once the day is past; the calendar, keyed in ahead, gives
    the days to predict theirs. A promotion keyed in after the cutoff is not known yet."""
    from datetime import date, datetime

    import duckdb

    from pipelines.retail import forecast

    con = duckdb.connect()
    for schema in ("silver", "gold"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute("""CREATE TABLE silver.stg_orders AS SELECT 'O1' AS order_id, TIMESTAMP '2026-11-01 10:00' AS ordered_at,
                   TIMESTAMP '2026-11-01 10:00' AS updated_at, DATE '2026-11-01' AS ingest_date""")
    con.execute("""CREATE TABLE silver.stg_order_lines AS SELECT 'L1' AS order_line_id, 'O1' AS order_id,
                   'SKU000001' AS product_id, 'WH01' AS warehouse_id, 3 AS quantity, 0.1 AS discount_pct,
                   9.0 AS unit_price, TIMESTAMP '2026-11-01 10:05' AS updated_at, DATE '2026-11-01' AS ingest_date""")
    con.execute("""CREATE TABLE gold.dim_date AS SELECT d::DATE AS date, false AS is_holiday, 1 AS day_of_week,
                   11 AS month FROM generate_series(DATE '2026-11-01', DATE '2026-11-08', INTERVAL 1 DAY) t(d)""")
    con.execute("""CREATE TABLE gold.dim_product AS SELECT 'SKU000001' AS product_id, 'snacks' AS category,
                   TIMESTAMP '2026-01-01' AS valid_from, NULL::TIMESTAMP AS valid_to, 10.0 AS unit_price""")
    promos = [("P1", date(2026, 11, 3), date(2026, 11, 5), 0.2, datetime(2026, 10, 20, 9), date(2026, 10, 20)),
              ("P1", date(2026, 11, 3), date(2026, 11, 5), 0.3, datetime(2026, 10, 25, 9), date(2026, 10, 25)),
              ("P2", date(2026, 11, 7), date(2026, 11, 7), 0.1, datetime(2026, 11, 2, 9), date(2026, 11, 2))]
    calendar = pl.DataFrame(promos, schema=["promotion_id", "starts_on", "ends_on", "discount_pct", "updated_at",
                                            "ingest_date"], orient="row").with_columns(product_id=pl.lit("SKU000001"))
    con.register("calendar", calendar)
    con.execute("CREATE TABLE silver.stg_promotions AS SELECT * FROM calendar")
    daily = forecast.daily_demand(con, last_actual=date(2026, 11, 1), until=date(2026, 11, 8))
    assert dict(zip(daily["date"], daily["discount"], strict=True)) == {
        date(2026, 11, 1): 0.1,  # the sold line's own discount
        date(2026, 11, 2): 0.0,
        date(2026, 11, 3): 0.3, date(2026, 11, 4): 0.3, date(2026, 11, 5): 0.3,  # its latest version
        date(2026, 11, 6): 0.0, date(2026, 11, 7): 0.0,  # P2 was keyed in after the cutoff
        date(2026, 11, 8): 0.0}
    # a day to predict is priced at its list price less the promotion known for it
    assert dict(zip(daily["date"], daily["price"], strict=True))[date(2026, 11, 3)] == 7.0
    assert daily["price"][0] == 9.0  # a day that sold: what it sold for
    con.execute("DROP TABLE silver.stg_promotions")  # a lake loaded before the ERP had a calendar
    daily = forecast.daily_demand(con, last_actual=date(2026, 11, 1), until=date(2026, 11, 8))
    assert daily["discount"].to_list() == [0.1] + [0.0] * 7


def _silver(series: int, days: int, seed: int = 3):
    """A catalog-shaped connection: ``series`` SKU x warehouse pairs sold on random days of
    ``days`` days (some rarely), some lines corrected a day later, dates and products."""
    from datetime import datetime

    import duckdb

    rng = np.random.default_rng(seed)
    first = date(2025, 1, 1)
    orders, lines = [], []
    for s in range(series):
        product, warehouse = f"SKU{s // 3:06d}", f"WH{s % 3 + 1:02d}"
        # every fifth series is a slow mover: weeks without a sale, its price carried or not
        for d in np.flatnonzero(rng.random(days) < (0.04 if s % 5 == 0 else 0.6)):
            day = first + timedelta(days=int(d))
            oid = f"O{s}-{d}"
            at = datetime(day.year, day.month, day.day, 10)
            orders.append((oid, at, at, day))
            qty = int(rng.integers(1, 9))
            lines.append((f"L{s}-{d}", oid, product, warehouse, qty, 0.0, 5.0, at, day))
            if rng.random() < 0.1:  # a correction ingested the next day
                lines.append((f"L{s}-{d}", oid, product, warehouse, qty + 5, 0.1, 4.5,
                              at + timedelta(days=1), day + timedelta(days=1)))
    con = duckdb.connect()
    for schema in ("silver", "gold"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.register("o", pl.DataFrame(orders, schema=["order_id", "ordered_at", "updated_at", "ingest_date"],
                                   orient="row"))
    con.register("l", pl.DataFrame(lines, schema=["order_line_id", "order_id", "product_id", "warehouse_id",
                                                  "quantity", "discount_pct", "unit_price", "updated_at",
                                                  "ingest_date"], orient="row"))
    con.execute("CREATE TABLE silver.stg_orders AS SELECT * FROM o")
    con.execute("CREATE TABLE silver.stg_order_lines AS SELECT * FROM l")
    con.execute(f"""CREATE TABLE gold.dim_date AS SELECT d::DATE AS date, dayofmonth(d) = 1 AS is_holiday,
                   isodow(d) AS day_of_week, month(d) AS month
                   FROM generate_series(DATE '{first}', DATE '{first + timedelta(days=days + 30)}', INTERVAL 1 DAY) t(d)""")
    # every list price rises from 5.5 to 6.0 on 2026-04-20 (a new version of each product)
    con.execute("""CREATE TABLE gold.dim_product AS
                   SELECT product_id, ['dairy', 'snacks', 'tools'][(hash(product_id) % 3)::INT + 1] AS category,
                          v.* FROM (SELECT DISTINCT product_id FROM l),
                   (VALUES (TIMESTAMP '2020-01-01', TIMESTAMP '2026-04-20', 5.5),
                           (TIMESTAMP '2026-04-20', NULL::TIMESTAMP, 6.0)) v(valid_from, valid_to, unit_price)""")
    return con, first


def test_a_frame_from_a_window_and_in_chunks_gives_the_whole_historys_features():
    """Scoring reads only the lookback its days need, a chunk of series at a time: the
    features of the days it predicts must equal those of the whole history built at once."""
    from pipelines.retail import forecast

    con, first = _silver(series=30, days=500)
    last = first + timedelta(days=480)
    until = last + timedelta(days=7)
    frame = forecast.prepare_demand(con, last_actual=last, until=until).frame()
    whole = forecast.features(frame.lazy()).collect()
    # lag_364, looked up by the frame's SQL, is the units of the row 364 days before
    by = ["product_id", "warehouse_id"]
    assert whole["lag_364"].equals(whole.select(pl.col("units").fill_null(0).shift(364).over(by))["units"],
                                   check_names=False)
    assert whole["lag_364"].drop_nulls().len() > 30 * 100
    whole = whole.filter(pl.col("date") > last - timedelta(days=30))
    since = last - timedelta(days=30 + forecast.LOOKBACK_DAYS)
    demand = forecast.prepare_demand(con, last_actual=last, until=until, since=since)
    assert demand.first == since  # the years before are not read
    chunks = demand.chunks(chunk_rows=3 * demand.days)
    assert len(chunks) >= 5  # several series per chunk, many chunks
    parts = [forecast.features(demand.frame(lo, hi).lazy()).filter(pl.col("date") > last - timedelta(days=30))
             .collect() for lo, hi in chunks]
    windowed = pl.concat(parts).sort("product_id", "warehouse_id", "date")
    # a day without a sale (slow movers: most days) is priced at the list price in force, less
    # its discount; the list price changed mid-window, and the days to predict get the last one
    unsold = whole.filter(pl.col("units").fill_null(0) == 0)
    assert unsold.height > 200 and unsold["price"].null_count() == 0
    listed = unsold.with_columns(listed=pl.when(pl.col("date") < date(2026, 4, 20)).then(5.5).otherwise(6.0))
    assert listed["price"].equals((listed["listed"] * (1 - listed["discount"])).round(4), check_names=False)
    assert windowed.height == whole.height == 30 * 37
    assert windowed.select(*FEATURES, "units").equals(whole.select(*FEATURES, "units"))
    # a chunk holds whole series: no series is split over two chunks
    assert sum(p.select("product_id", "warehouse_id").n_unique() for p in parts) == 30


def test_training_keeps_a_fixed_prefix_of_series_buckets_within_its_row_budget():
    from pipelines.retail import forecast

    con, first = _silver(series=60, days=120)
    last = first + timedelta(days=119)
    every = forecast.prepare_demand(con, last_actual=last, until=last)
    assert every.series == 60 and every.kept_buckets == forecast.BUCKETS
    budget = 20 * every.days
    sample = forecast.prepare_demand(con, last_actual=last, until=last, max_rows=budget)
    frame = sample.frame()
    kept = frame.select("product_id", "warehouse_id").unique()
    assert 0 < kept.height == sample.series and kept.height * sample.days <= budget
    assert kept.height >= 10  # within one bucket's worth of series of the budget (60 series in 1,024 buckets)
    # the sample is the series of the lowest buckets, the same on a rerun
    buckets = dict(con.sql("SELECT product_id || warehouse_id, bucket FROM demand_series").fetchall())
    inside = {buckets[p + w] for p, w in kept.iter_rows()}
    outside = set(buckets.values()) - inside
    assert max(inside) < min(outside)
    again = forecast.prepare_demand(con, last_actual=last, until=last, max_rows=budget).frame()
    assert again.equals(frame)
    # and the sampled series' frame is theirs in the whole frame (a Demand reads the connection's
    # temporary tables: the last one prepared is the one to read)
    whole = forecast.prepare_demand(con, last_actual=last, until=last).frame()
    assert whole.join(kept, on=["product_id", "warehouse_id"]).sort("product_id", "warehouse_id", "date") \
        .select(frame.columns).equals(frame)
