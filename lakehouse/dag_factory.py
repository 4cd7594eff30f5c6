"""Build a domain's daily DAG from its configuration.

Daily shape (ADR 0004): ``extract_<source>`` -> ``silver_<entity>`` -> ``build_gold``
-> ``publish_catalog`` -> ``apply_retention``, ``score_forecast`` and ``check_freshness``
-> ``announce_backfill`` and ``write_report`` (the HTML health dashboard). Every task
try is recorded in the lake's run history (``lakehouse.runlog``) for that dashboard. The business date is the start of the run's data interval
in the domain's timezone: the timetable is a ``CronDataIntervalTimetable`` on
purpose, since a plain cron string in Airflow 3 gives a zero-width interval.

Training is its own DAG (``<domain>_train``, ADR 0008): weekly, and once after a
backfill, when the backfill's last run emits the ``<domain>_gold_history`` asset.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lakehouse.config import load_domain

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def business_date(tz: str) -> date:
    """The run's business date: its logical date in the domain timezone.

    With ``CronDataIntervalTimetable`` a scheduled or backfill run's logical date is
    its data interval start (the day being processed), and ``airflow dags test DAG D``
    sets the logical date to D, so every way of running a day agrees on the date.
    """
    from airflow.sdk import get_current_context

    return _business_date_of(get_current_context()["logical_date"], tz)


def _business_date_of(logical_date: datetime, tz: str) -> date:
    return logical_date.astimezone(ZoneInfo(tz)).date()


def _run_id() -> str:
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    return f"{ctx['dag'].dag_id}/{ctx['run_id']}"


def permanent_errors() -> tuple[type[Exception], ...]:
    """Errors a retry cannot fix: bad data and bad configuration (ADR 0010).

    Anything else (a timeout, a refused connection, a 5xx after the client's own
    retries) is transient and gets the task's retries with exponential backoff.
    """
    from lakehouse.config import ConfigError
    from lakehouse.extract.files import FileError
    from lakehouse.silver import QualityGateError

    return (QualityGateError, FileError, ConfigError)


def _fail_fast(fn):
    """Permanent errors fail the task at once (no retries); transient ones propagate to be retried."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return fn(*args, **kwargs)
        except permanent_errors() as exc:
            raise AirflowFailException(f"{type(exc).__name__} (permanent, not retried): {exc}") from exc

    return wrapper


def _end(cfg) -> datetime | None:
    if cfg.end_date is None:
        return None
    return datetime.combine(cfg.end_date, datetime.min.time(), ZoneInfo(cfg.timezone))


def attempt_fence(config_dir: str):
    """An ``on_execute_callback`` that claims the task instance for this try before it runs
    (``storage.claim_attempt``): a retry fences off an earlier attempt that still lives."""
    def claim_attempt(context) -> None:
        from lakehouse import storage

        ti, run = context["ti"], context.get("dag_run")
        scope = f"{ti.dag_id}.{ti.task_id}.{ti.run_id}.{getattr(ti, 'map_index', -1)}"
        generation = str(getattr(run, "start_date", "") or "")
        storage.claim_attempt(load_domain(config_dir).lake, scope, int(ti.try_number or 1), generation)

    return claim_attempt


def task_callbacks(config_dir: str) -> dict:
    """Alerts (after the last retry, recoveries), the run history the health report reads,
    environment secrets masked and the attempt claimed (fencing older ones) before each task runs."""
    from lakehouse import alerts, runlog, secrets

    return {"on_execute_callback": [secrets.mask_environment, attempt_fence(config_dir)],
            "on_failure_callback": [alerts.on_task_failure, runlog.callback(config_dir, "failed")],
            "on_success_callback": [alerts.on_task_success, runlog.callback(config_dir, "success")],
            "on_retry_callback": runlog.callback(config_dir, "up_for_retry")}


def gold_history_asset(domain: str):
    """The asset a finished backfill announces: gold history was rewritten."""
    from airflow.sdk import Asset

    return Asset(name=f"{domain}_gold_history", uri=f"lakehouse://{domain}/gold/history")


def build_dag(config_dir: str | Path):
    """A DAG for one domain; only config is read here, nothing heavy is imported."""
    from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

    from lakehouse import alerts, tasks

    config_dir = str(config_dir)
    cfg = load_domain(config_dir)
    tz = cfg.timezone
    with DAG(
        dag_id=f"{cfg.name}_daily",
        description=f"{cfg.name}: sources -> bronze -> silver -> gold -> DuckDB -> forecast",
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone=tz),
        start_date=datetime.combine(cfg.start_date, datetime.min.time(), ZoneInfo(tz)),
        catchup=False,  # history is loaded by the start date's full load and by backfills
        end_date=_end(cfg),
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, **task_callbacks(config_dir)},
        on_failure_callback=alerts.on_dag_failure,
        on_success_callback=alerts.on_dag_success,
        params={"force_extract": Param(False, type="boolean",
                                       description="re-extract even if the bronze partition exists")},
        tags=["lakehouse", cfg.name],
        doc_md=__doc__,
    ) as dag:
        extracts = {}
        for source in cfg.sources:
            @task(task_id=f"extract_{source.name}", pool="default_pool")
            @_fail_fast
            def extract(source_name: str = source.name, params: dict | None = None) -> dict:
                force = bool((params or {}).get("force_extract", False))
                return tasks.extract(config_dir, source_name, business_date(tz), _run_id(), force)

            extracts[source.name] = extract()

        silvers = []
        for contract in cfg.contracts:
            @task(task_id=f"silver_{contract.entity}", retries=0)
            @_fail_fast
            def silver(entity: str = contract.entity) -> dict:
                return tasks.silver(config_dir, entity, business_date(tz), _run_id())

            node = silver()
            extracts[contract.source] >> node
            silvers.append(node)

        @task(task_id="build_gold")
        def build_gold() -> dict:
            return tasks.gold(config_dir, business_date(tz))

        @task(task_id="publish_catalog")
        def publish_catalog() -> str:
            return tasks.catalog(config_dir)

        # tier 3: statistical checks of gold's daily metrics; flags alert, never fail the run
        @task(task_id="check_quality")
        def check_quality() -> dict:
            return tasks.quality(config_dir, business_date(tz), _run_id())

        @task(task_id="check_freshness")
        def check_freshness() -> dict:
            return tasks.freshness(config_dir, business_date(tz))

        # none_failed: the dashboard is most useful on the days something was skipped
        @task(task_id="write_report", trigger_rule="none_failed", retries=0)
        def write_report() -> str:
            return tasks.report(config_dir, business_date(tz))

        @task(task_id="apply_retention")
        def apply_retention() -> dict:
            return tasks.retention(config_dir, business_date(tz))

        @task(task_id="score_forecast")
        def score_forecast() -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            try:
                return tasks.score(config_dir, business_date(tz))
            except tasks.NoChampion as exc:
                raise AirflowSkipException(str(exc)) from exc

        # none_failed: a skipped scoring (no model yet) must not stop the announcement
        @task(task_id="announce_backfill", outlets=[gold_history_asset(cfg.name)],
              trigger_rule="none_failed", retries=0)
        def announce_backfill() -> str:
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowSkipException

            from lakehouse.backfill import should_announce

            ctx = get_current_context()
            ti, dag_id = ctx["ti"], ctx["dag"].dag_id

            def states() -> dict[str, str | None]:
                found = ti.get_task_states(dag_id=dag_id, task_ids=["announce_backfill"])
                return {run: tasks_.get("announce_backfill") for run, tasks_ in found.items()}

            announce, why = should_announce(load_domain(config_dir).lake, dag_id, ctx["run_id"], states)
            if not announce:
                raise AirflowSkipException(why)  # a skipped task emits no asset event
            return why

        gold = build_gold()
        silvers >> gold
        catalog = publish_catalog()
        gold >> catalog
        retention = apply_retention()
        # a domain without ml: (e.g. tpch) has no model to score with
        scored = [score_forecast()] if cfg.ml else []
        fresh = check_freshness()
        checked = check_quality()
        gold >> checked
        catalog >> [retention, *scored, fresh]
        [retention, *scored] >> announce_backfill()
        [retention, *scored, fresh, checked] >> write_report()
    return dag


def build_training_dag(config_dir: str | Path):
    """The domain's training DAG: weekly, and once when a backfill of the daily DAG finishes."""
    from airflow.sdk import DAG, task
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

    from lakehouse import alerts, tasks

    config_dir = str(config_dir)
    cfg = load_domain(config_dir)
    if cfg.ml is None:
        return None
    tz = cfg.timezone
    with DAG(
        dag_id=f"{cfg.name}_train",
        description=f"{cfg.name}: train the forecast from the star schema; champion/challenger",
        schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(cfg.ml.train_schedule, timezone=tz),
                                     assets=gold_history_asset(cfg.name)),
        start_date=datetime.combine(cfg.start_date, datetime.min.time(), ZoneInfo(tz)),
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, **task_callbacks(config_dir)},
        on_failure_callback=alerts.on_dag_failure,
        on_success_callback=alerts.on_dag_success,
        tags=["lakehouse", cfg.name, "ml"],
        doc_md=__doc__,
    ) as dag:
        @task(task_id="train_forecast")
        def train_forecast() -> dict:
            from airflow.sdk import get_current_context

            # a weekly run trains on the day before it fires; an asset-triggered run has no
            # logical date and trains on everything the lake holds
            logical = get_current_context().get("logical_date")
            as_of = logical.astimezone(ZoneInfo(tz)).date() - timedelta(days=1) if logical else None
            try:
                return tasks.train(config_dir, as_of)
            except tasks.NoData as exc:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(str(exc)) from exc

        train_forecast()
    return dag
