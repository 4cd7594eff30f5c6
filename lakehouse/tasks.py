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

    cfg = _cfg(config_dir)
    staged = silver_layer.stage(cfg, entity, run_date, run_id)
    return staged | {"silver_rows": silver_layer.build(cfg, entity)}


def gold(config_dir: str, run_date: date) -> dict:
    from lakehouse import gold as gold_layer

    return gold_layer.build_all(_cfg(config_dir), run_date)


def catalog(config_dir: str) -> str:
    from lakehouse.catalog import build_catalog

    return str(build_catalog(_cfg(config_dir)))


def retention(config_dir: str, run_date: date) -> dict:
    from lakehouse.retention import apply_retention

    return apply_retention(_cfg(config_dir), run_date)


def _forecast_module(cfg: DomainConfig):
    import importlib

    return importlib.import_module(f"pipelines.{cfg.name}.forecast")


def train(config_dir: str, run_date: date) -> dict:
    from lakehouse.catalog import connect_read_only

    cfg = _cfg(config_dir)
    with connect_read_only(cfg) as con:
        return _forecast_module(cfg).train(cfg, con, run_date)


def score(config_dir: str, run_date: date, model: dict) -> int:
    from lakehouse.catalog import build_catalog, connect_read_only

    cfg = _cfg(config_dir)
    with connect_read_only(cfg) as con:
        rows = _forecast_module(cfg).score(cfg, con, run_date, model["model_version"], model["artifact"])
    build_catalog(cfg)  # the forecast and model tables appear to analysts
    return rows
