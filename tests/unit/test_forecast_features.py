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
