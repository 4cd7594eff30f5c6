"""Build a domain's DAGs from its configuration and the declared step list (``lakehouse.steps``).

Daily shape (ADR 0004, declared in ``steps.DAILY``): ``extract_<source>`` -> ``silver_<entity>`` -> ``build_gold``
-> ``publish_catalog`` -> ``apply_retention``, ``score_forecast`` and ``check_freshness``
-> ``announce_backfill`` and ``write_report`` (the HTML health dashboard). Every task
try is recorded in the lake's run history (``lakehouse.runlog``) for that dashboard. The business date is the start of the run's data interval
in the domain's timezone: the timetable is a ``CronDataIntervalTimetable`` on
purpose, since a plain cron string in Airflow 3 gives a zero-width interval, and our
subclass ``lakehouse.timetable.BusinessDayTimetable`` so that ``airflow backfill create``'s
bare dates are the domain's dates (ADR 0025).

Training is its own DAG (``<domain>_train``, ADR 0008): weekly, and once after a
backfill, when the backfill's last run emits the ``<domain>_gold_history`` asset.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lakehouse.config import DomainConfig, domain_name, load_domain

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def business_date(tz: str) -> date:
    """The run's business date (see ``business_date_of``)."""
    from airflow.sdk import get_current_context

    return business_date_of(get_current_context()["logical_date"], tz)


def business_date_of(logical_date: datetime, tz: str) -> date:
    """The business date a run's logical date stands for.

    A scheduled or backfill run's logical date is its data interval start, a midnight in
    the domain timezone (``CronDataIntervalTimetable``): its date there is the business
    date. A date typed by a user (``airflow dags test DAG 2013-02-04``, ``dags trigger
    --logical-date``) arrives as midnight UTC, which west of UTC is the evening before in
    the domain's zone: that date is taken as typed. Only a zone at UTC+0 at that moment has
    both at once, and then they name the same date.
    """
    utc = logical_date.astimezone(ZoneInfo("UTC"))
    if utc.time() == datetime.min.time():
        return utc.date()
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


def _asset(kind: str, domain: str):
    assets = {"gold_history": gold_history_asset}
    return assets[kind](domain)


def _run_step(step, item: str | None, config_dir: str, tz: str, params: dict | None,
              run_date_of=None):
    """Body of every task: build the run's context, call the step's action, and map its
    outcome onto Airflow (``Skipped`` -> skipped; permanent errors of a ``fail_fast`` step
    fail at once, without retries)."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    from lakehouse.steps import RunContext
    from lakehouse.tasks import Skipped

    context = get_current_context()
    run_date = (run_date_of or business_date)(tz)
    ctx = RunContext(cfg=load_domain(config_dir), run_date=run_date, run_id=_run_id(),
                     force_extract=bool((params or {}).get("force_extract", False)), airflow=context,
                     failed_upstream=_failed_in_run(context) if step.trigger_rule == "all_done" else ())
    call = _fail_fast(step.call) if step.fail_fast else step.call
    try:
        return call(ctx, item)
    except Skipped as exc:
        raise AirflowSkipException(str(exc)) from exc


def _failed_in_run(context) -> tuple[str, ...]:
    """The run's tasks that failed or could not run, from Airflow's own states (the failing
    tasks' callbacks may not have recorded anything yet when an all_done task starts)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return tuple(sorted(t for t, s in states.items() if s in ("failed", "upstream_failed")))


def _add_tasks(steps: list, cfg, config_dir: str, run_date_of=None) -> dict:
    """One Airflow task per step (and per source or entity it fans out over), wired as declared."""
    from airflow.sdk import task

    from lakehouse.steps import upstream_task_ids

    nodes = {}
    for step in steps:
        for item in step.items(cfg):
            # a task stuck in Python fails at the domain's limit; one stuck in native code is
            # ended a little later by the step's hard limit (``Step.call``, lakehouse.watchdog)
            options: dict = {"task_id": step.task_id(item), "trigger_rule": step.trigger_rule,
                             "doc_md": step.doc or None,
                             "execution_timeout": timedelta(minutes=cfg.task_timeout_minutes)}
            if step.retries is not None:
                options["retries"] = step.retries
            if step.outlets:
                options["outlets"] = [_asset(kind, cfg.name) for kind in step.outlets]

            @task(**options)
            def run(step=step, item=item, params: dict | None = None):
                return _run_step(step, item, config_dir, cfg.timezone, params, run_date_of)

            node = run()
            for up in upstream_task_ids(steps, step, item, cfg):
                nodes[up] >> node
            nodes[step.task_id(item)] = node
    return nodes


def build_dag(config_dir: str | Path, cfg: DomainConfig | None = None):
    """A DAG for one domain from the declared daily steps; only config is read here
    (``cfg``, when given, is ``config_dir``'s loaded configuration)."""
    from airflow.sdk import DAG, Param

    from lakehouse import alerts
    from lakehouse.steps import DAILY, select
    from lakehouse.timetable import BusinessDayTimetable

    config_dir = str(config_dir)
    cfg = cfg or load_domain(config_dir)
    tz = cfg.timezone
    with DAG(
        dag_id=f"{cfg.name}_daily",
        description=f"{cfg.name}: sources -> bronze -> silver -> gold -> DuckDB -> forecast",
        schedule=BusinessDayTimetable(cfg.schedule, timezone=tz),
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
        _add_tasks(select(DAILY, cfg), cfg, config_dir)
    return dag


def _training_date(tz: str) -> date | None:
    """A weekly training run's date (its logical date in the domain timezone); an
    asset-triggered run has no logical date."""
    from airflow.sdk import get_current_context

    logical = get_current_context().get("logical_date")
    return business_date_of(logical, tz) if logical else None


def build_training_dag(config_dir: str | Path, cfg: DomainConfig | None = None):
    """The domain's training DAG: weekly, and once when a backfill of the daily DAG finishes
    (None when the domain configures no model)."""
    from airflow.sdk import DAG
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

    from lakehouse import alerts
    from lakehouse.steps import TRAINING, select

    config_dir = str(config_dir)
    cfg = cfg or load_domain(config_dir)
    if cfg.ml is None:
        return None
    tz = cfg.timezone
    with DAG(
        dag_id=f"{cfg.name}_train",
        description=f"{cfg.name}: train the forecast from the star schema; champion/challenger",
        schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(cfg.ml.train_schedule, timezone=tz),
                                     assets=gold_history_asset(cfg.name)),
        start_date=datetime.combine(cfg.start_date, datetime.min.time(), ZoneInfo(tz)),
        end_date=_end(cfg),  # as the daily DAG: no weekly run after the domain's last date
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, **task_callbacks(config_dir)},
        on_failure_callback=alerts.on_dag_failure,
        on_success_callback=alerts.on_dag_success,
        tags=["lakehouse", cfg.name, "ml"],
        doc_md=__doc__,
    ) as dag:
        _add_tasks(select(TRAINING, cfg), cfg, config_dir, run_date_of=_training_date)
    return dag


def domain_dags(path: list[Path] | None = None, *, only: str | None = None) -> dict[str, object]:
    """Every domain's DAGs (``lakehouse.domains``): its daily DAG, and its training DAG when it
    configures a model, by DAG id. A domain is a folder of YAML; none needs a DAG file.

    A task process builds only its own DAG: Airflow's task runner parses the DAG file inside
    a parsing context naming the DAG (``get_parsing_context``, Airflow's advice for generated
    DAGs), and ``only`` names one too. Every task of every run pays for that parse, and
    building every domain's DAGs cost a trivial task most of its second (ADR 0024).

    A config error names its file and line and fails the DAG file's import, as a broken DAG
    file would (Airflow shows it at the top of the UI); ``lakehouse --domain X status`` or
    ``make test`` finds it first. Two domains with one ``name:`` would share DAG ids: refused.
    """
    from airflow.sdk import get_parsing_context

    from lakehouse import domains

    wanted = only or get_parsing_context().dag_id
    dags: dict[str, object] = {}
    origin: dict[str, Path] = {}
    for folder in domains.discover(path).values():
        name = domain_name(folder)
        if name in origin:
            raise ValueError(f"DAG id {name + '_daily'!r} of {folder} is also {origin[name]}'s: "
                             "give one domain another name: in its domain.yaml")
        origin[name] = folder
        builders = {f"{name}_daily": build_dag, f"{name}_train": build_training_dag}
        if wanted:
            builders = {dag_id: b for dag_id, b in builders.items() if dag_id == wanted}
        if not builders:
            continue
        cfg = load_domain(folder)
        for build in builders.values():
            dag = build(folder, cfg)
            if dag is not None:
                dags[dag.dag_id] = dag
    return dags
