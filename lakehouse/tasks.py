"""What each Airflow task does: resolve config and the business date, call one function.

Kept apart from the DAG factory so DAG files import nothing heavy at parse time
(polars, duckdb, xgboost load only when a task runs), and so the same steps can
run outside Airflow (``lakehouse`` CLI, tests).
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from lakehouse.config import DomainConfig, load_domain

log = logging.getLogger(__name__)


def _cfg(config_dir: str | Path) -> DomainConfig:
    return load_domain(config_dir)


def extract(config_dir: str, source: str, run_date: date, run_id: str, force: bool = False) -> dict:
    from lakehouse import bronze

    return bronze.ingest(_cfg(config_dir), source, run_date, run_id, force=force)


def silver(config_dir: str, entity: str, run_date: date, run_id: str) -> dict:
    from lakehouse import silver as silver_layer
    from lakehouse.storage import locked

    cfg = _cfg(config_dir)
    # runs for other dates may stage the same entity concurrently; building under the lock
    # means the last build sees every batch staged before it, so the final table has them all
    with locked(cfg.lake, f"silver_{entity}"):
        staged = silver_layer.stage(cfg, entity, run_date, run_id)
        return staged | {"silver_rows": silver_layer.build(cfg, entity)}


def gold(config_dir: str, run_date: date) -> dict:
    from lakehouse import gold as gold_layer

    return gold_layer.build_all(_cfg(config_dir), run_date)


def catalog(config_dir: str) -> str:
    from lakehouse.catalog import build_catalog

    return str(build_catalog(_cfg(config_dir)))


def freshness(config_dir: str, run_date: date) -> dict:
    """Check every freshness window against the run's date; stale tables alert, never block."""
    from lakehouse import freshness as fresh

    cfg = _cfg(config_dir)
    return fresh.alert(cfg, fresh.check(cfg, run_date), run_date)


def quality(config_dir: str, run_date: date, run_id: str) -> dict:
    """Tier-3 statistical checks of the day's gold metrics (recorded, alerted, never blocking)."""
    from lakehouse.quality import statistical_checks

    return statistical_checks(_cfg(config_dir), run_date, run_id)


def replay(config_dir: str, entity: str, since: date) -> dict:
    """Promote quarantined rows that pass the current contract; then gold and the catalog follow."""
    from lakehouse.replay import replay as replay_quarantine

    cfg = _cfg(config_dir)
    out = replay_quarantine(cfg, entity, since)
    latest = latest_business_date(cfg)
    if out["promoted"] and latest is not None:
        out["gold"] = gold(config_dir, latest)
        out["catalog"] = catalog(config_dir)
    return out


def report(config_dir: str, run_date: date) -> str:
    """Rewrite the HTML health dashboard, freshness measured as of the run's date."""
    from lakehouse.report import write_report

    return str(write_report(_cfg(config_dir), as_of=run_date))


def retention(config_dir: str, run_date: date) -> dict:
    from lakehouse.retention import apply_retention

    return apply_retention(_cfg(config_dir), run_date)


def _forecast_module(cfg: DomainConfig):
    import importlib

    return importlib.import_module(f"pipelines.{cfg.name}.forecast")


def latest_business_date(cfg: DomainConfig) -> date | None:
    """The newest business date whose batches reached silver (what training can know)."""
    from lakehouse import storage

    found = [date.fromisoformat(p["ingest_date"]) for c in cfg.contracts
             for p in storage.partitions(cfg.lake, "silver", f"stg_{c.entity}") if "ingest_date" in p]
    return max(found, default=None)


def train(config_dir: str, as_of: date | None = None) -> dict:
    """Train (and maybe promote) on what the lake knew at ``as_of``.

    ``as_of`` defaults to the newest business date in silver: a training run
    triggered by a finished backfill has no date of its own. A later ``as_of`` is
    capped at that date, so a weekly run on a lake that is behind trains on what is there.
    """
    from lakehouse.catalog import connect_read_only, refresh_catalog

    cfg = _cfg(config_dir)
    latest = latest_business_date(cfg)
    if latest is None:
        raise NoData(f"{cfg.name}: nothing in silver yet; the daily DAG's first run comes before training")
    as_of = min(as_of, latest) if as_of else latest
    with connect_read_only(cfg) as con:
        result = _forecast_module(cfg).train(cfg, con, as_of)
    refresh_catalog(cfg)  # registry and metrics tables appear to analysts the first time
    return result | {"as_of": as_of.isoformat()}


class NoData(LookupError):
    """Nothing to train on yet (a fresh lake)."""


class NoChampion(LookupError):
    """No model served on the business date yet (train one first)."""


def score(config_dir: str, run_date: date) -> dict:
    """Forecast with the champion that served on ``run_date``; idempotent per date."""
    from lakehouse import registry
    from lakehouse.catalog import connect_read_only, refresh_catalog

    cfg = _cfg(config_dir)
    module = _forecast_module(cfg)
    version = registry.champion(cfg.lake, module.MODEL_NAME, as_of=run_date)
    if version is None:
        raise NoChampion(f"{module.MODEL_NAME}: no champion on {run_date}; the training DAG "
                         f"({cfg.name}_train) registers one")
    artifact = registry.artifact(cfg.lake, module.MODEL_NAME, version)
    with connect_read_only(cfg) as con:
        rows = module.score(cfg, con, run_date, version, artifact)
    refresh_catalog(cfg)  # forecast and monitoring tables, and views over them, appear the first time
    return {"model_version": version, "forecast_rows": rows}
