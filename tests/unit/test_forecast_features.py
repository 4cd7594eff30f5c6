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
        "units": units, "discount": [0.0] * n, "price": [1.0] * n, "category": ["dairy"] * n,
    })


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

    from lakehouse.ml import feature_drift, psi

    rng = np.random.default_rng(0)
    base = rng.normal(10, 2, 5000)
    assert psi(base, rng.normal(10, 2, 2000)) < 0.05
    assert psi(base, rng.normal(13, 2, 2000)) > 0.2  # a price regime change
    train = pl.DataFrame({"price": base, "lag_7": base})
    now = pl.DataFrame({"price": rng.normal(13, 2, 2000), "lag_7": rng.normal(10, 2, 2000)})
    drift = feature_drift(train, now, ["price", "lag_7"])
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
                   TIMESTAMP '2026-01-01' AS valid_from, NULL::TIMESTAMP AS valid_to""")
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
    con.execute("DROP TABLE silver.stg_promotions")  # a lake loaded before the ERP had a calendar
    daily = forecast.daily_demand(con, last_actual=date(2026, 11, 1), until=date(2026, 11, 8))
    assert daily["discount"].to_list() == [0.1] + [0.0] * 7
