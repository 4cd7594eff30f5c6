"""The actions of the pipeline's steps (``lakehouse.steps`` declares their order).

Each action takes the run's ``RunContext`` (domain config, business date, run id) and calls
one function of the framework. Kept apart from the DAG factory so DAG files import nothing
heavy at parse time (polars, duckdb, xgboost load only when a task runs), and so the same
actions run outside Airflow (``lakehouse`` CLI, rebuild, tests) through ``steps.run_local``.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING

from lakehouse.config import DomainConfig

if TYPE_CHECKING:
    from lakehouse.steps import RunContext

log = logging.getLogger(__name__)


class Skipped(Exception):
    """The step has nothing to do on this run (Airflow marks the task skipped)."""


class NoData(Skipped, LookupError):
    """Nothing to train on yet (a fresh lake)."""


class NoChampion(Skipped, LookupError):
    """No model served on the business date yet (train one first)."""


def extract(ctx: RunContext, source: str) -> dict:
    from lakehouse import bronze

    return bronze.ingest(ctx.cfg, source, ctx.run_date, ctx.run_id, force=ctx.force_extract)


def silver(ctx: RunContext, entity: str) -> dict:
    from lakehouse import silver as silver_layer
    from lakehouse.storage import locked

    # runs for other dates may stage the same entity concurrently; building under the lock
    # means the last build sees every batch staged before it, so the final table has them all
    with locked(ctx.cfg.lake, f"silver_{entity}"):
        return silver_layer.stage_and_build(ctx.cfg, entity, ctx.run_date, ctx.run_id)


def gold(ctx: RunContext) -> dict:
    from lakehouse import gold as gold_layer
    from lakehouse.quality import publish_held

    # the day's silver check results, one commit for every batch, before the catalog serves them
    publish_held(ctx.cfg, ctx.run_date)
    return gold_layer.build_all(ctx.cfg, ctx.run_date)


def catalog(ctx: RunContext) -> str:
    from lakehouse.catalog import build_catalog

    return str(build_catalog(ctx.cfg))


def freshness(ctx: RunContext) -> dict:
    """Check every freshness window against the run's date; stale tables alert, never block.

    It runs whatever happened upstream (all_done). When this run's own tasks failed, their
    incident is what on-call hears about: the tables are checked and reported, and a table
    that caught up still recovers, but a stale one opens no second incident for the same
    cause; it alerts on the next run that fails nothing, if it is still behind."""
    from lakehouse import freshness as fresh

    results = fresh.check(ctx.cfg, ctx.run_date)
    if ctx.failed_upstream:
        log.info("not alerting on staleness: this run's %s failed (their incident tells on-call)",
                 ", ".join(ctx.failed_upstream))
        return fresh.alert(ctx.cfg, [r for r in results if r.fresh], ctx.run_date) | {
            "stale": [r.table for r in results if not r.fresh], "quiet_because": list(ctx.failed_upstream)}
    return fresh.alert(ctx.cfg, results, ctx.run_date)


def quality(ctx: RunContext) -> dict:
    """Tier-3 statistical checks of the day's gold metrics (recorded, alerted, never blocking)."""
    from lakehouse.quality import statistical_checks

    return statistical_checks(ctx.cfg, ctx.run_date, ctx.run_id)


def report(ctx: RunContext) -> str:
    """Rewrite the HTML health dashboard, freshness measured as of the run's date."""
    from lakehouse.quality import publish_held
    from lakehouse.report import write_report

    # a day a silver gate blocked has no build_gold: its check results are published here
    # (the blocked batch's first), so the dashboard, status and the next catalog show them
    if ctx.run_date is not None:
        publish_held(ctx.cfg, ctx.run_date)
    return str(write_report(ctx.cfg, as_of=ctx.run_date))


def retention(ctx: RunContext) -> dict:
    from lakehouse.retention import apply_retention

    return apply_retention(ctx.cfg, ctx.run_date)


def compact(ctx: RunContext) -> dict:
    """Compact the Delta tables whose daily commits left many small files (``lakehouse optimize``
    compacts every table)."""
    from lakehouse.storage import compact_small_files

    done = compact_small_files(ctx.cfg.lake)
    log.info("compacted %d table(s): %s", len(done), ", ".join(done) or "none needed")
    return {name: {k: m.get(k) for k in ("numFilesAdded", "numFilesRemoved")} for name, m in done.items()}


def score(ctx: RunContext) -> dict:
    """Forecast with the champion that served on the run's date; idempotent per date."""
    return score_date(ctx.cfg, ctx.run_date)


def announce_backfill(ctx: RunContext) -> str:
    """Emit the gold-history asset from a backfill's last run only (``lakehouse.backfill``).

    Outside Airflow there is no backfill to announce, so the step is skipped there."""
    if ctx.airflow is None:
        raise Skipped("not an Airflow run: no backfill to announce")
    from lakehouse.backfill import should_announce

    ti, dag_id = ctx.airflow["ti"], ctx.airflow["dag"].dag_id

    def states() -> dict[str, str | None]:
        found = ti.get_task_states(dag_id=dag_id, task_ids=["announce_backfill"])
        return {run: tasks_.get("announce_backfill") for run, tasks_ in found.items()}

    announce, why = should_announce(ctx.cfg.lake, dag_id, ctx.airflow["run_id"], states)
    if not announce:
        raise Skipped(why)  # a skipped task emits no asset event
    return why


def train_step(ctx: RunContext) -> dict:
    """The training pipeline's step: a weekly run trains on the day before it fires; a run
    without a business date (asset-triggered after a backfill) on everything the lake holds."""
    from datetime import timedelta

    as_of = ctx.run_date - timedelta(days=1) if ctx.run_date else None
    return train(ctx.cfg, as_of)


def replay(cfg: DomainConfig, entity: str, since: date) -> dict:
    """Promote quarantined rows that pass the current contract; then gold and the catalog follow."""
    from lakehouse.catalog import build_catalog
    from lakehouse.gold import build_all
    from lakehouse.replay import replay as replay_quarantine

    out = replay_quarantine(cfg, entity, since)
    latest = latest_business_date(cfg)
    if out["promoted"] and latest is not None:
        out["gold"] = build_all(cfg, latest)
        out["catalog"] = str(build_catalog(cfg))
    return out


def forecast_module(cfg: DomainConfig):
    import importlib

    return importlib.import_module(f"pipelines.{cfg.name}.forecast")


def latest_business_date(cfg: DomainConfig) -> date | None:
    """The newest business date whose batches reached silver (what training can know)."""
    from lakehouse import storage

    found = [date.fromisoformat(p["ingest_date"]) for c in cfg.contracts
             for p in storage.partitions(cfg.lake, "silver", f"stg_{c.entity}") if "ingest_date" in p]
    return max(found, default=None)


def train(cfg: DomainConfig, as_of: date | None = None) -> dict:
    """Train (and maybe promote) on what the lake knew at ``as_of``.

    ``as_of`` defaults to the newest business date in silver: a training run
    triggered by a finished backfill has no date of its own. A later ``as_of`` is
    capped at that date, so a weekly run on a lake that is behind trains on what is there.
    """
    from lakehouse.catalog import connect_read_only, refresh_catalog

    latest = latest_business_date(cfg)
    if latest is None:
        raise NoData(f"{cfg.name}: nothing in silver yet; the daily DAG's first run comes before training")
    as_of = min(as_of, latest) if as_of else latest
    with connect_read_only(cfg, memory_limit=cfg.ml.duckdb_memory_limit) as con:
        result = forecast_module(cfg).train(cfg, con, as_of)
    refresh_catalog(cfg)  # registry and metrics tables appear to analysts the first time
    return result | {"as_of": as_of.isoformat()}


def score_date(cfg: DomainConfig, run_date: date) -> dict:
    """Forecast with the champion that served on ``run_date``; idempotent per date."""
    from lakehouse import registry
    from lakehouse.catalog import connect_read_only, refresh_catalog

    module = forecast_module(cfg)
    version = registry.champion(cfg.lake, module.MODEL_NAME, as_of=run_date)
    if version is None:
        raise NoChampion(f"{module.MODEL_NAME}: no champion on {run_date}; the training DAG "
                         f"({cfg.name}_train) registers one")
    artifact = registry.artifact(cfg.lake, module.MODEL_NAME, version)
    with connect_read_only(cfg, memory_limit=cfg.ml.duckdb_memory_limit) as con:
        rows = module.score(cfg, con, run_date, version, artifact)
    refresh_catalog(cfg)  # forecast and monitoring tables, and views over them, appear the first time
    return {"model_version": version, "forecast_rows": rows}
