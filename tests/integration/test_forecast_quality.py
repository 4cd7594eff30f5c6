"""At demo scale the forecast beats seasonal naive by at least 15% WAPE, reproducibly.

The retailer ``make demo`` simulates (120 SKUs x 4 warehouses, 26 months, fixed seed)
is loaded through the pipeline and trained on exactly as the training DAG does. A
second training run on the same snapshot must give the same version, metrics and
model file, byte for byte.
"""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from lakehouse import registry, storage, tasks
from pipelines.retail.forecast import MODEL_NAME
from pipelines.retail.simulator import SimulationParams
from tests.conftest import START, run_day_direct

DEMO = dataclasses.replace(SimulationParams(), end=START)


# 26 months of demo-scale history loaded and trained twice: 170 s alone, 547-600 s in CI beside
# the whole-Airflow tests on 2 cores; the default 600 s would turn a loaded machine into a failure
@pytest.mark.timeout(1200)
def test_xgboost_beats_seasonal_naive_by_15_percent_and_retrains_identically(tiny):
    cfg = tiny.cfg
    tiny.advance(START, DEMO)
    run_day_direct(cfg, START)
    first = tasks.train(cfg, START)
    assert first["improvement_vs_seasonal_naive"] >= 0.15, first
    # cross-validated too, not only on the one holdout
    assert first["cv_wape_xgboost"] <= 0.85 * first["cv_wape_seasonal_naive"], first
    assert first["cv_folds"] == cfg.ml.cv_folds
    artifact = cfg.lake / registry.artifact(cfg.lake, MODEL_NAME, first["challenger"])
    model_bytes = artifact.read_bytes()
    metrics = storage.scan(cfg.lake, "gold", "ml_model_metrics").sort(pl.all()).collect()

    second = tasks.train(cfg, START)
    assert second["challenger"] == first["challenger"]
    same = {"decision", "promoted"}  # the rerun finds its version serving already
    assert {k: v for k, v in second.items() if k not in same} == {k: v for k, v in first.items() if k not in same}
    assert first["promoted"] and not second["promoted"]
    assert artifact.read_bytes() == model_bytes
    assert storage.scan(cfg.lake, "gold", "ml_model_metrics").sort(pl.all()).collect().equals(metrics)
