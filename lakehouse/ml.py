"""ML plumbing shared by domains: metrics, time split, XGBoost training, a lake-native registry.

Models are saved in XGBoost's own JSON format (never pickle) under
``<lake>/_models/<version>/model.json``; their metadata rows form ``gold.ml_models``.
A version is the hash of the training data, parameters and seed, so the same
snapshot and seed give the same version, metrics and predictions.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse import storage


def wape(actual: np.ndarray | pl.Series, predicted: np.ndarray | pl.Series) -> float:
    """Weighted absolute percentage error: sum|y - y_hat| / sum|y|."""
    a, p = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    denom = np.abs(a).sum()
    return float(np.abs(a - p).sum() / denom) if denom else float("nan")


def segment_metrics(frame: pl.DataFrame, *, actual: str, predictions: list[str],
                    segments: list[str]) -> pl.DataFrame:
    """WAPE, MAE and bias of each prediction column, overall and per value of each segment column.

    Bias is sum(y_hat - y) / sum(y): positive means over-forecasting. One row per
    (model, segment_type, segment).
    """
    frames = []
    for model in predictions:
        err = pl.col(model) - pl.col(actual)
        aggs = [
            (err.abs().sum() / pl.col(actual).abs().sum()).alias("wape"),
            err.abs().mean().alias("mae"),
            (err.sum() / pl.col(actual).abs().sum()).alias("bias"),
            pl.len().alias("rows"),
        ]
        data = frame.filter(pl.col(model).is_not_null())
        frames.append(data.select(aggs).with_columns(segment_type=pl.lit("all"), segment=pl.lit("all"),
                                                     model=pl.lit(model)))
        for seg in segments:
            frames.append(data.group_by(pl.col(seg).cast(pl.String).alias("segment")).agg(aggs)
                          .with_columns(segment_type=pl.lit(seg), model=pl.lit(model)))
    cols = ["model", "segment_type", "segment", "wape", "mae", "bias", "rows"]
    return pl.concat([f.select(cols) for f in frames]).with_columns(
        pl.col("wape", "mae", "bias").round(6)).sort("model", "segment_type", "segment")


def psi(expected: np.ndarray | pl.Series, actual: np.ndarray | pl.Series, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (nulls ignored).

    Bins are ``expected``'s quantiles; empty bins get a small floor so the log is finite.
    Rule of thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant drift.
    """
    edges, shares = _bins(expected, bins)
    return _psi(edges, shares, actual)


def _values(values: np.ndarray | pl.Series) -> np.ndarray:
    return np.asarray(pl.Series(values).drop_nulls().cast(pl.Float64).to_numpy())


def _bins(expected: np.ndarray | pl.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile edges of ``expected`` and its share in each bin (no edges when it is empty)."""
    e = _values(expected)
    if e.size == 0:
        return np.array([]), np.array([])
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    return edges, np.bincount(np.searchsorted(edges, e, side="right"), minlength=edges.size + 1) / e.size


def _psi(edges: np.ndarray, e_share: np.ndarray, actual: np.ndarray | pl.Series) -> float:
    a = _values(actual)
    if e_share.size == 0 or a.size == 0:
        return float("nan")
    a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1) / a.size
    e_share, a_share = np.clip(e_share, 1e-4, None), np.clip(a_share, 1e-4, None)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def drift_profile(reference: pl.DataFrame, features: list[str], bins: int = 10) -> pl.DataFrame:
    """The reference distribution of each feature as PSI reads it: one row per feature and bin,
    with the bin's upper edge (null for the last bin) and the reference's share in it.

    A model's profile is taken once, from its training data, and kept beside it: scoring
    compares each day against the stored profile without reading the training days again.
    """
    rows = []
    for f in features:
        edges, shares = _bins(reference[f], bins)
        rows += [{"feature": f, "bin": i, "upper_edge": float(edges[i]) if i < edges.size else None,
                  "share": float(share), "rows": reference[f].drop_nulls().len()} for i, share in enumerate(shares)]
    return pl.DataFrame(rows, schema={"feature": pl.String, "bin": pl.Int32, "upper_edge": pl.Float64,
                                      "share": pl.Float64, "rows": pl.Int64})


def feature_drift(reference: pl.DataFrame, current: pl.DataFrame, features: list[str],
                  threshold: float = 0.2, min_rows: int = 1) -> pl.DataFrame:
    """PSI per feature between the reference profile (``drift_profile`` of the training
    window) and the current scoring window.

    A feature drifts when its PSI exceeds ``threshold`` and the scoring window has at
    least ``min_rows`` values of it: on a handful of rows PSI is mostly sampling noise
    (its expected value under no drift is about ``(bins - 1) / n``).
    """
    rows = []
    for f in features:
        bins = reference.filter(pl.col("feature") == f).sort("bin")
        edges = bins["upper_edge"].drop_nulls().to_numpy()
        rows.append({"feature": f, "psi": round(_psi(edges, bins["share"].to_numpy(), current[f]), 6),
                     "rows": current[f].drop_nulls().len()})
    return pl.DataFrame(rows, schema={"feature": pl.String, "psi": pl.Float64, "rows": pl.Int64}).with_columns(
        threshold=pl.lit(threshold),
        drifted=pl.col("psi").is_not_nan() & (pl.col("psi") > threshold) & (pl.col("rows") >= min_rows))


def accuracy_degradation(accuracy: pl.LazyFrame, baseline_wape: dict[str, float], *,
                         threshold: float, min_rows: int) -> pl.DataFrame:
    """Live WAPE per model version against the WAPE it had on its holdout.

    ``accuracy`` holds ``model_version``, ``predicted_units`` and ``actual_units``
    for the monitoring window. A version is degraded when live WAPE exceeds its
    holdout WAPE by more than ``threshold`` (0.25: 25% worse) on at least
    ``min_rows`` forecast/actual pairs.
    """
    live = accuracy.group_by("model_version").agg(
        ((pl.col("predicted_units") - pl.col("actual_units")).abs().sum()
         / pl.col("actual_units").abs().sum()).alias("live_wape"),
        pl.len().alias("rows"),
    ).collect()
    base = pl.DataFrame({"model_version": list(baseline_wape), "holdout_wape": list(baseline_wape.values())},
                        schema={"model_version": pl.String, "holdout_wape": pl.Float64})
    return live.join(base, on="model_version", how="left").with_columns(
        degradation=(pl.col("live_wape") / pl.col("holdout_wape") - 1).round(6),
        live_wape=pl.col("live_wape").round(6), threshold=pl.lit(threshold),
    ).with_columns(
        degraded=(pl.col("degradation") > threshold) & (pl.col("rows") >= min_rows)
        & pl.col("degradation").is_not_nan(),
    ).sort("model_version")


def rolling_origins(last: date, *, folds: int, horizon_days: int) -> list[tuple[date, date]]:
    """Rolling-origin evaluation windows, oldest first, the last ending on ``last``.

    Each window is ``(origin, end)``: train on dates <= origin, evaluate on
    ``(origin, end]``. Windows are ``horizon_days`` long and do not overlap.
    """
    from datetime import timedelta

    ends = [last - timedelta(days=horizon_days * i) for i in range(folds)]
    return [(end - timedelta(days=horizon_days), end) for end in reversed(ends)]


def frame_hash(frame: pl.DataFrame) -> str:
    """Content hash of a training frame (column names, dtypes and values).

    It names model versions, which are stored: SHA-256 over the frame's CSV text (shortest
    round-trip numbers, ISO dates), a slice at a time, so it does not change with Polars'
    internal row hash (not guaranteed stable across versions) and never holds the whole text.
    """
    h = hashlib.sha256(str(frame.schema).encode())
    for chunk in frame.iter_slices(100_000):
        h.update(chunk.write_csv(include_header=False).encode())
    return h.hexdigest()[:16]


@dataclass
class TrainedModel:
    version: str
    booster: object
    features: list[str]
    metrics: dict[str, float]


def train_xgboost(train: pl.DataFrame, *, features: list[str], target: str, params: dict,
                  seed: int) -> object:
    """Fit a deterministic XGBoost regressor (fixed seed, single thread order, hist trees)."""
    import xgboost as xgb

    model = xgb.XGBRegressor(**{"tree_method": "hist", "n_jobs": 2, "random_state": seed,
                                "objective": "reg:squarederror", **params})
    model.fit(train.select(features).to_numpy(), train[target].to_numpy())
    return model


def register(lake: Path, *, model: object, version: str, run_date: date, features: list[str],
             params: dict, metrics: dict[str, float], train_window: tuple[date, date],
             data_hash: str, name: str) -> dict:
    """Save the model artifact and publish its row of ``gold.ml_models`` (one partition a version)."""
    artifact = f"_models/{version}/model.json"
    with tempfile.TemporaryDirectory(prefix="lakehouse-model-") as tmp_dir:
        tmp = Path(tmp_dir) / "model.json"  # xgboost picks the format from the suffix
        model.save_model(tmp)
        storage.put_file(tmp, storage.lake_path(lake, *artifact.split("/")))
    importance = dict(zip(features, map(float, model.feature_importances_), strict=True))
    row = {
        "model_name": name, "trained_for_date": run_date,
        "train_from": train_window[0], "train_to": train_window[1], "data_hash": data_hash,
        "params": json.dumps(params, sort_keys=True), "metrics": json.dumps(metrics, sort_keys=True),
        "features": json.dumps(features), "feature_importance": json.dumps(importance, sort_keys=True),
        "artifact": artifact, "libraries": json.dumps(_libraries(), sort_keys=True),
        **{f"metric_{k}": v for k, v in metrics.items()},
    }
    storage.publish(pl.DataFrame([row]), lake, "gold", "ml_models", {"model_version": version})
    # the registry row is keyed by content: retraining on the same snapshot rewrites the same row
    return row | {"model_version": version}


def load_model(lake: Path, artifact: str) -> object:
    """Load a registered model; ``artifact`` is relative to the lake (lakes can move)."""
    import xgboost as xgb

    model = xgb.XGBRegressor()
    with tempfile.TemporaryDirectory(prefix="lakehouse-model-") as tmp_dir:
        model.load_model(storage.get_file(storage.lake_path(lake, *artifact.split("/")), Path(tmp_dir) / "model.json"))
    return model


def _libraries() -> dict[str, str]:
    libs = {name: pkg_version(name) for name in ("polars", "xgboost", "scikit-learn", "duckdb")}
    return libs | {"python": platform.python_version()}
