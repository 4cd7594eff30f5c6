"""Champion/challenger on top of the lake-native model registry (``gold.ml_models``).

Every trained version is registered (``lakehouse.ml.register``). Which version
serves is the *champion*, kept in ``_state/models/<name>.json`` with every change
of champion (promotion, automatic or by hand, and rollback) and published as
``gold.ml_model_events`` so it is queryable in DuckDB. A challenger replaces the
champion only if it beats it on the same holdout (``decide``).

Changes are recorded only when the champion actually changes, so rerunning a
day's training, which registers the same content-addressed version, records nothing.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from lakehouse import storage

EVENTS_TABLE = "ml_model_events"
# the catalog's comments of the registry's tables (lakehouse.docs); "*" matches a name's rest
DOCS = {
    "ml_models": ("Model registry: one row per trained model version, with its lineage and metrics", {
        "model_version": "Version id: a hash of the training data, parameters, seed and folds",
        "model_name": "The model's name (a domain may train several)",
        "trained_for_date": "Business date the training ran for (trained on data up to the day before)",
        "train_from": "First date of the training data", "train_to": "Last date of the training data",
        "data_hash": "Content hash of the training frame (columns, types, values)",
        "params": "Hyperparameters (JSON)", "metrics": "Holdout and cross-validation metrics (JSON)",
        "features": "Feature names, in model order (JSON)",
        "feature_importance": "XGBoost's importance per feature (JSON)",
        "artifact": "Path of the saved model in the lake", "libraries": "Library versions it was trained with (JSON)",
        "metric_*": "One metric of the metrics JSON as a number (wape, mae, bias, baselines' wape, cv means)",
    }),
    EVENTS_TABLE: ("Registry events: every promotion and rollback, in order", {
        "model_name": "The model's name", "action": "promote or rollback",
        "model_version": "The version that serves from on_date", "previous_version": "The version it replaced",
        "on_date": "First business date the version serves", "reason": "Why (the holdout comparison, or by hand)",
        "sequence": "Order of the events (1 = first)",
    }),
}


class RegistryError(RuntimeError):
    """A promotion or rollback is not possible (unknown version, nothing to roll back to)."""


def _state_path(lake: Path, name: str) -> Path:
    return storage.state_path(lake, "models", f"{name}.json")


def _state(lake: Path, name: str) -> dict:
    """``stack``: champions in order of promotion, the last one serving; ``events``: every change."""
    return storage.read_json(_state_path(lake, name), {"stack": [], "events": []})


def _champion(state: dict) -> str | None:
    return state["stack"][-1] if state["stack"] else None


def champion(lake: Path, name: str, as_of: date | None = None) -> str | None:
    """The version that serves, or None before the first promotion.

    With ``as_of``, the version that served on that business date: changes recorded
    for later dates are ignored, so rescoring a past date (a rerun, a backfill) uses
    the model of that date and never one trained on data from after it.
    """
    state = _state(lake, name)
    if as_of is None:
        return _champion(state)
    stack: list[str] = []
    for event in state["events"]:
        if date.fromisoformat(event["on_date"]) > as_of:
            continue
        if event["action"] == "promote":
            stack.append(event["model_version"])
        elif stack:
            stack.pop()
    return stack[-1] if stack else None


def registered(lake: Path, name: str) -> pl.DataFrame:
    """Registered versions of a model (``gold.ml_models`` rows)."""
    lf = storage.scan(lake, "gold", "ml_models", missing_ok=True)
    if lf is None:
        return pl.DataFrame()
    return lf.filter(pl.col("model_name") == name).collect()


def version_row(lake: Path, name: str, version: str) -> dict:
    """The ``gold.ml_models`` row of one version; unknown versions are refused."""
    rows = registered(lake, name)
    match = rows.filter(pl.col("model_version") == version) if rows.height else rows
    if match.height == 0:
        raise RegistryError(f"model {name!r} has no registered version {version!r}")
    return match.row(0, named=True)


def artifact(lake: Path, name: str, version: str) -> str:
    """Path of a version's model file, relative to the lake."""
    return version_row(lake, name, version)["artifact"]


def decide(challenger_wape: float, champion_wape: float | None) -> tuple[bool, str]:
    """Promote only a strictly better challenger, measured on the same holdout."""
    if champion_wape is None:
        return True, "first version: no champion yet"
    if challenger_wape < champion_wape:
        return True, f"challenger WAPE {challenger_wape:.4f} < champion {champion_wape:.4f} on the same holdout"
    return False, f"challenger WAPE {challenger_wape:.4f} >= champion {champion_wape:.4f}: champion kept"


def promote(lake: Path, name: str, version: str, *, reason: str, on: date) -> bool:
    """Make ``version`` the champion; returns False (and records nothing) if it already is."""
    artifact(lake, name, version)  # refuses unknown versions
    with storage.locked(lake, f"registry_{name}"):
        state = _state(lake, name)
        if _champion(state) == version:
            return False
        _record(state, name, version, "promote", reason, on)
        state["stack"].append(version)
        storage.write_json(_state_path(lake, name), state)
        _publish_events(lake, state["events"])
    return True


def rollback(lake: Path, name: str, *, on: date, reason: str = "manual rollback") -> str:
    """Retire the current champion and restore the one it replaced; returns that version."""
    with storage.locked(lake, f"registry_{name}"):
        state = _state(lake, name)
        if len(state["stack"]) < 2:
            raise RegistryError(f"model {name!r}: no earlier champion to roll back to")
        _record(state, name, state["stack"][-2], "rollback", reason, on)
        state["stack"].pop()
        previous = state["stack"][-1]
        storage.write_json(_state_path(lake, name), state)
        _publish_events(lake, state["events"])
    return previous


def _record(state: dict, name: str, version: str, action: str, reason: str, on: date) -> None:
    state["events"].append({"model_name": name, "action": action, "model_version": version,
                            "previous_version": _champion(state), "on_date": on.isoformat(),
                            "reason": reason})


def _publish_events(lake: Path, events: list[dict]) -> None:
    frame = pl.DataFrame(events, schema={
        "model_name": pl.String, "action": pl.String, "model_version": pl.String,
        "previous_version": pl.String, "on_date": pl.String, "reason": pl.String,
    }).with_columns(pl.col("on_date").str.to_date(), sequence=pl.int_range(1, pl.len() + 1))
    storage.publish(frame, lake, "gold", EVENTS_TABLE)
