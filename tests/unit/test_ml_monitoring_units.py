"""Monitoring and evaluation helpers on tiny frames: drift sample size, live WAPE, CV windows."""

from datetime import date

import numpy as np
import polars as pl

from lakehouse import ml


def test_drift_needs_enough_rows_to_alert():
    rng = np.random.default_rng(0)
    reference = pl.DataFrame({"price": rng.normal(10, 1, 5000)})
    shifted = pl.DataFrame({"price": rng.normal(13, 1, 40)})
    profile = ml.drift_profile(reference, ["price"])
    few = ml.feature_drift(profile, shifted, ["price"], threshold=0.2, min_rows=500)
    assert few["psi"].item() > 0.2 and not few["drifted"].item() and few["rows"].item() == 40
    many = ml.feature_drift(profile, pl.DataFrame({"price": rng.normal(13, 1, 600)}), ["price"],
                            threshold=0.2, min_rows=500)
    assert many["drifted"].item()


def test_drift_against_a_stored_profile_is_the_psi_against_its_reference():
    """Scoring reads the profile training kept, not the training rows: same PSI, to the bit."""
    rng = np.random.default_rng(1)
    reference = pl.DataFrame({"price": rng.lognormal(1, 0.5, 3000), "lag_7": rng.poisson(4, 3000).astype(float),
                              "empty": [None] * 3000}, schema_overrides={"empty": pl.Float64})
    current = pl.DataFrame({"price": rng.lognormal(1.2, 0.5, 700), "lag_7": rng.poisson(5, 700).astype(float),
                            "empty": rng.normal(0, 1, 700)})
    features = ["price", "lag_7", "empty"]
    profile = ml.drift_profile(reference, features)
    # lag_7's ties collapse quantile edges: fewer bins than 10, as psi() counts them
    assert profile.filter(pl.col("feature") == "lag_7").height < 10 == profile.filter(
        pl.col("feature") == "price").height
    drift = ml.feature_drift(profile, current, features)
    assert drift["psi"][:2].to_list() == [round(ml.psi(reference[f], current[f]), 6) for f in features[:2]]
    assert np.isnan(drift["psi"][2]) and not drift["drifted"][2]  # no reference values: no verdict


def test_accuracy_degradation_compares_live_wape_with_each_versions_holdout():
    acc = pl.LazyFrame({
        "model_version": ["a"] * 4 + ["b"] * 4,
        "predicted_units": [10.0, 10, 10, 10, 10, 10, 10, 10],
        "actual_units": [10, 10, 10, 10, 5, 5, 5, 5],
    })
    out = ml.accuracy_degradation(acc, {"a": 0.1, "b": 0.5}, threshold=0.25, min_rows=4)
    rows = {r["model_version"]: r for r in out.iter_rows(named=True)}
    assert rows["a"]["live_wape"] == 0 and not rows["a"]["degraded"]
    assert rows["b"]["live_wape"] == 1.0 and rows["b"]["degradation"] == 1.0 and rows["b"]["degraded"]
    # too few forecasts for a verdict
    assert not ml.accuracy_degradation(acc, {"b": 0.5}, threshold=0.25, min_rows=5)["degraded"].any()


def test_rolling_origins_end_on_the_last_day_and_do_not_overlap():
    windows = ml.rolling_origins(date(2026, 11, 30), folds=3, horizon_days=28)
    assert windows[-1] == (date(2026, 11, 2), date(2026, 11, 30))
    assert [w[1] for w in windows[:-1]] == [w[0] for w in windows[1:]]
    assert all((end - origin).days == 28 for origin, end in windows)
