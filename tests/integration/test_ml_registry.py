"""Training and scoring through the registry: champion serves, metrics per segment, drift recorded."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from lakehouse import registry, storage, tasks
from pipelines.retail.forecast import MODEL_NAME
from tests.conftest import START, run_day_direct


def test_champion_serves_and_every_version_is_measured(tiny):
    cfg = tiny.cfg
    days = [START + timedelta(days=i) for i in range(3)]
    for day in days:
        tiny.advance(day)
        run_day_direct(cfg, day, train=True)
    models = storage.scan(cfg.lake, "gold", "ml_models").collect()
    events = storage.scan(cfg.lake, "gold", "ml_model_events").sort("sequence").collect()
    champion = registry.champion(cfg.lake, MODEL_NAME)
    assert events["action"][0] == "promote" and events["model_version"][-1] == champion
    # the first day had no model yet; a model trained on day D serves from D + 1
    assert events["on_date"][0] == days[1]
    assert set(events["model_version"]) <= set(models["model_version"])
    # each promotion was justified on the same holdout
    assert all("champion" in r or "first version" in r for r in events["reason"])
    forecast = storage.scan(cfg.lake, "gold", "fct_demand_forecast").filter(
        pl.col("forecast_date").cast(pl.Date) == days[-1]).collect()
    assert forecast["model_version"].unique().to_list() == [registry.champion(cfg.lake, MODEL_NAME, days[-1])]
    metrics = storage.scan(cfg.lake, "gold", "ml_model_metrics").collect()
    assert set(metrics["model"]) == {"xgboost", "seasonal_naive", "moving_average_28", "sklearn_hist_gbm"}
    assert set(metrics["segment_type"]) == {"all", "category", "warehouse_id"}
    drift = storage.scan(cfg.lake, "gold", "ml_feature_drift").collect()
    assert drift["forecast_date"].n_unique() == len(days) - 1 and drift["psi"].is_not_null().all()
    # the drift profile training kept is the one its reference days give when rebuilt from a window
    # as the lake knew them that day (what scoring falls back to for a version without one)
    from lakehouse import catalog, ml
    from pipelines.retail import forecast as fc

    row = registry.version_row(cfg.lake, MODEL_NAME, champion)
    stored = storage.scan_partition(cfg.lake, "gold", "ml_drift_reference", {"model_version": champion}).collect()
    with catalog.connect_read_only(cfg) as con:
        rebuilt = ml.drift_profile(fc.drift_reference(cfg, con, row["train_to"], known_at=row["trained_for_date"]),
                                   fc.DRIFT_FEATURES)
    assert stored.height >= 8 and rebuilt.sort("feature", "bin").equals(
        stored.select(rebuilt.columns).sort("feature", "bin"))
    accuracy = storage.scan(cfg.lake, "gold", "fct_forecast_accuracy").collect()
    assert accuracy.height > 0 and (accuracy["horizon_days"].is_between(1, 7)).all()
    # analysts' stockout view: one row per SKU x warehouse of the latest forecast
    import duckdb

    with duckdb.connect(cfg.catalog_path, read_only=True) as con:
        risk = con.sql("SELECT product_id, warehouse_id, risk, forecast_units_7d, on_hand, days_of_cover "
                           "FROM gold.rpt_stockout_risk").pl()
    assert risk.height == forecast.select("product_id", "warehouse_id").unique().height
    assert set(risk["risk"]) <= {"out", "high", "medium", "low", "unknown"}
    assert risk.filter(pl.col("on_hand").is_not_null()).height > 0
    # rescoring a past day after later training uses that day's champion: nothing changes
    before = storage.content_hash(cfg.lake, "gold", "fct_demand_forecast")
    tasks.score_date(cfg, days[1])
    assert storage.content_hash(cfg.lake, "gold", "fct_demand_forecast") == before
    # by hand: promote another version, then roll back to the champion it replaced
    other = next(v for v in models["model_version"] if v != champion)
    registry.promote(cfg.lake, MODEL_NAME, other, reason="test", on=days[-1])
    assert registry.champion(cfg.lake, MODEL_NAME) == other
    assert registry.rollback(cfg.lake, MODEL_NAME, on=days[-1]) == champion


def test_too_short_a_history_is_said_plainly_and_registers_nothing(tiny):
    """Seven weeks of sales leave nothing to train on before the 4-week holdout: the error says
    so and from when to load, instead of a model library's "0 sample(s)"."""
    import dataclasses

    import pytest

    from tests.conftest import TINY

    short = dataclasses.replace(TINY, history_start=START - timedelta(days=50), change_horizon_days=50)
    tiny.advance(START, short)
    run_day_direct(tiny.cfg, START)
    with pytest.raises(ValueError, match=r"not enough history to train for .* Load sales from \d{4}-\d{2}-\d{2}"):
        tasks.train(tiny.cfg, START)
    assert storage.scan(tiny.cfg.lake, "gold", "ml_models", missing_ok=True) is None
