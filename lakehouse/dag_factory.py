"""Build a domain's daily DAG from its configuration.

Shape (ADR 0004): ``extract_<source>`` -> ``silver_<entity>`` -> ``build_gold`` ->
``publish_catalog`` -> ``train_forecast`` -> ``score_forecast``. The business date
is the start of the run's data interval in the domain's timezone: the timetable is
a ``CronDataIntervalTimetable`` on purpose, since a plain cron string in Airflow 3
gives a zero-width interval.
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

    ctx = get_current_context()
    return ctx["logical_date"].astimezone(ZoneInfo(tz)).date()


def _run_id() -> str:
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    return f"{ctx['dag'].dag_id}/{ctx['run_id']}"


def _fail_fast(fn):
    """Quality-gate failures are permanent: fail the task at once instead of retrying."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        from lakehouse.silver import QualityGateError

        try:
            return fn(*args, **kwargs)
        except QualityGateError as exc:
            raise AirflowFailException(str(exc)) from exc

    return wrapper


def _end(cfg) -> datetime | None:
    if cfg.end_date is None:
        return None
    return datetime.combine(cfg.end_date, datetime.min.time(), ZoneInfo(cfg.timezone))


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
        default_args={**DEFAULT_ARGS, "on_failure_callback": alerts.on_task_failure},
        on_failure_callback=alerts.on_dag_failure,
        params={"force_extract": Param(False, type="boolean",
                                       description="re-extract even if the bronze partition exists")},
        tags=["lakehouse", cfg.name],
        doc_md=__doc__,
    ) as dag:
        extracts = {}
        for source in cfg.sources:
            @task(task_id=f"extract_{source.name}", pool="default_pool")
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

        @task(task_id="apply_retention")
        def apply_retention() -> dict:
            return tasks.retention(config_dir, business_date(tz))

        @task(task_id="train_forecast")
        def train_forecast() -> dict:
            return tasks.train(config_dir, business_date(tz))

        @task(task_id="score_forecast")
        def score_forecast(model: dict) -> int:
            return tasks.score(config_dir, business_date(tz), model)

        gold = build_gold()
        silvers >> gold
        catalog = publish_catalog()
        gold >> catalog
        catalog >> apply_retention()
        model = train_forecast()
        catalog >> model
        score_forecast(model)
    return dag
