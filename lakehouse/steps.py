"""The pipeline's steps, declared once (ADR 0018).

Each ``Step`` names what it does (an action in ``lakehouse.tasks``), what it fans out over
(one per source, one per entity, or none), what it waits for and how it fails. The Airflow
DAG factory turns the lists into tasks; ``run_local`` runs the same lists in the same order
with the same trigger rules for the CLI (``lakehouse run``), ``lakehouse rebuild`` and the
tests. So a test exercises the order production runs, and adding a step is one line here.

Nothing here imports Airflow, Polars or delta-rs: the DAG files import this module at
parse time (the actions import what they need when they run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

from lakehouse import memory, tasks, watchdog
from lakehouse.config import DomainConfig

log = logging.getLogger(__name__)

FanOut = Literal["sources", "entities"]
TriggerRule = Literal["all_success", "none_failed", "all_done"]
State = Literal["success", "skipped", "failed", "upstream_failed"]


@dataclass(frozen=True)
class RunContext:
    """What every step of one run gets: the domain, its business date and the run's id."""

    cfg: DomainConfig
    run_date: date | None  # None only for a training run triggered by an asset (no logical date)
    run_id: str
    force_extract: bool = False
    # Airflow's task context when the step runs as an Airflow task, else None (CLI, tests)
    airflow: Mapping[str, Any] | None = None
    # an all_done step's view of its run: the tasks that failed or could not run before it
    failed_upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step of a pipeline; ``over`` fans it out into one task per source or entity."""

    name: str
    action: Callable[..., Any]  # action(ctx) or, fanned out, action(ctx, item)
    over: FanOut | None = None
    upstream: tuple[str, ...] = ()
    trigger_rule: TriggerRule = "all_success"
    retries: int | None = None  # None: the DAG's default (2, exponential backoff)
    # bad data or configuration fails at once instead of being retried (ADR 0010)
    fail_fast: bool = False
    applies: Callable[[DomainConfig], bool] = field(default=lambda cfg: True)
    outlets: tuple[str, ...] = ()  # assets a successful task emits (Airflow), by kind
    doc: str = ""

    def items(self, cfg: DomainConfig) -> list[str | None]:
        """The sources or entities the step fans out over; ``[None]`` when it does not."""
        if self.over == "sources":
            return [s.name for s in cfg.sources]
        if self.over == "entities":
            return [c.entity for c in cfg.contracts]
        return [None]

    def task_id(self, item: str | None) -> str:
        return self.name if item is None else f"{self.name}_{item}"

    def call(self, ctx: RunContext, item: str | None) -> Any:
        """Run the action, under the domain's hard time limit (``lakehouse.watchdog``)."""
        limit = watchdog.hard_limit_s(ctx.cfg.task_timeout_minutes * 60)
        with watchdog.hard_limit(limit, self.task_id(item)):
            return self.action(ctx) if item is None else self.action(ctx, item)


def select(steps: Iterable[Step], cfg: DomainConfig, names: Iterable[str] | None = None) -> list[Step]:
    """The steps that apply to ``cfg`` (e.g. scoring only with a model), optionally only
    ``names``; order is the declared one, and edges to steps left out are dropped."""
    wanted = set(names) if names is not None else None
    chosen = [s for s in steps if s.applies(cfg) and (wanted is None or s.name in wanted)]
    kept = {s.name for s in chosen}
    return [replace(s, upstream=tuple(u for u in s.upstream if u in kept)) for s in chosen]


def upstream_task_ids(steps: list[Step], step: Step, item: str | None, cfg: DomainConfig) -> list[str]:
    """Task ids one task of ``step`` waits for.

    A per-entity step after a per-source step waits for its own source's task only (an
    entity's silver build needs its source's bronze batch, not every source's); any other
    step waits for every task of its upstream steps.
    """
    by_name = {s.name: s for s in steps}
    out: list[str] = []
    for name in step.upstream:
        up = by_name[name]
        if step.over == "entities" and up.over == "sources" and item is not None:
            out.append(up.task_id(cfg.contract(item).source))
        else:
            out += [up.task_id(i) for i in up.items(cfg)]
    return out


def check_order(steps: list[Step]) -> None:
    """Every step comes after the steps it waits for (the local runner relies on it)."""
    seen: set[str] = set()
    for s in steps:
        missing = [u for u in s.upstream if u not in seen]
        if missing:
            raise ValueError(f"step {s.name!r} is declared before its upstream {missing}")
        seen.add(s.name)


# --------------------------------------------------------------------------- the pipelines
DAILY: list[Step] = [
    Step("extract", tasks.extract, over="sources", fail_fast=True,
         doc="a source's batch for the business date into bronze (idempotent per date)"),
    Step("silver", tasks.silver, over="entities", upstream=("extract",), retries=0, fail_fast=True,
         doc="type, validate (quarantine, gates) and build one silver entity"),
    Step("build_gold", tasks.gold, upstream=("silver",), doc="facts, dimensions and aggregates"),
    Step("publish_catalog", tasks.catalog, upstream=("build_gold",), doc="the analysts' DuckDB file"),
    # tier 3: statistical checks of gold's daily metrics; flags alert, never fail the run
    Step("check_quality", tasks.quality, upstream=("build_gold",), doc="tier-3 checks of the day"),
    Step("apply_retention", tasks.retention, upstream=("publish_catalog",),
         doc="expire partitions past retention, vacuum"),
    Step("compact_tables", tasks.compact, upstream=("apply_retention",),
         doc="compact Delta tables that gathered many small files"),
    Step("score_forecast", tasks.score, upstream=("publish_catalog",), applies=lambda cfg: cfg.ml is not None,
         doc="forecast with the champion that served on the date (skipped while there is none)"),
    # all_done: a day that failed upstream is exactly when on-call needs freshness measured
    Step("check_freshness", tasks.freshness, upstream=("publish_catalog",), trigger_rule="all_done",
         doc="freshness windows"),
    # none_failed: a skipped scoring (no model yet) must not stop the announcement
    Step("announce_backfill", tasks.announce_backfill, upstream=("apply_retention", "score_forecast"),
         trigger_rule="none_failed", retries=0, outlets=("gold_history",),
         doc="emit the gold-history asset once, from a backfill's last run (Airflow only)"),
    # all_done: the dashboard is refreshed whatever happened upstream, failures included: it
    # is most needed on the day something failed (it shows the run history's failed tasks)
    Step("write_report", tasks.report, trigger_rule="all_done", retries=0,
         upstream=("apply_retention", "score_forecast", "check_freshness", "check_quality"),
         doc="the HTML health dashboard"),
]

TRAINING: list[Step] = [
    Step("train_forecast", tasks.train_step, applies=lambda cfg: cfg.ml is not None,
         doc="train on the star schema as of the day before; champion/challenger"),
]

# A full refresh regenerates silver and gold from bronze: the same steps after extraction
REBUILD_STEPS = ("silver", "build_gold", "publish_catalog")

check_order(DAILY)
check_order(TRAINING)


# --------------------------------------------------------------------------- running outside Airflow
@dataclass
class Outcome:
    task_id: str
    state: State
    seconds: float = 0.0
    result: Any = None
    error: BaseException | None = None
    peak_rss_mb: float | None = None  # the process's peak RSS while the task ran (``lakehouse.memory``)


class StepsFailed(RuntimeError):
    """One or more tasks of a local run failed; every independent task still ran."""

    def __init__(self, outcomes: dict[str, Outcome]) -> None:
        self.outcomes = outcomes
        self.failed = {k: o for k, o in outcomes.items() if o.state == "failed"}
        lines = [f"{k}: {type(o.error).__name__}: {o.error}" for k, o in self.failed.items()]
        blocked = sorted(k for k, o in outcomes.items() if o.state == "upstream_failed")
        super().__init__(f"{len(self.failed)} task(s) failed:\n  " + "\n  ".join(lines)
                         + (f"\nnot run (upstream failed): {', '.join(blocked)}" if blocked else ""))

    @property
    def first_error(self) -> BaseException:
        return next(iter(self.failed.values())).error  # type: ignore[return-value]


def _decide(rule: TriggerRule, upstream: list[State]) -> State | None:
    """Airflow's trigger rule on finished upstream states: None means run the task."""
    if rule == "all_done":
        return None
    if any(s in ("failed", "upstream_failed") for s in upstream):
        return "upstream_failed"
    if rule == "all_success" and any(s == "skipped" for s in upstream):
        return "skipped"
    return None


def run_local(steps: list[Step], ctx: RunContext, *, only: Iterable[str] | None = None,
              on_outcome: Callable[[Outcome], None] | None = None,
              raise_on_failure: bool = True) -> dict[str, Outcome]:
    """Run a pipeline's tasks in declared order with Airflow's trigger rules, in this process.

    A failed task does not stop independent ones (an entity's gate failing leaves the other
    entities to build), as under Airflow; its downstream tasks become ``upstream_failed``.
    Raises ``StepsFailed`` naming every failure at the end (unless ``raise_on_failure`` is
    False); returns ``{task_id: Outcome}``.
    """
    chosen = select(steps, ctx.cfg, only)
    outcomes: dict[str, Outcome] = {}
    for step in chosen:
        for item in step.items(ctx.cfg):
            task_id = step.task_id(item)
            ups = [outcomes[u].state for u in upstream_task_ids(chosen, step, item, ctx.cfg)]
            state = _decide(step.trigger_rule, ups)
            seen = ctx
            if step.trigger_rule == "all_done":
                seen = replace(ctx, failed_upstream=tuple(
                    k for k, o in outcomes.items() if o.state in ("failed", "upstream_failed")))
            outcome = Outcome(task_id, state) if state else _run_one(step, seen, item)
            outcomes[task_id] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
    if raise_on_failure and any(o.state == "failed" for o in outcomes.values()):
        raise StepsFailed(outcomes)
    return outcomes


def _run_one(step: Step, ctx: RunContext, item: str | None) -> Outcome:
    task_id = step.task_id(item)
    # each task's own peak, as its own process under Airflow would have (what earlier tasks
    # left resident is counted in, as it is held meanwhile)
    with memory.measured() as peak:
        start = time.perf_counter()
        try:
            result = step.call(ctx, item)
        except tasks.Skipped as exc:
            log.info("%s skipped: %s", task_id, exc)
            return Outcome(task_id, "skipped", time.perf_counter() - start, str(exc), peak_rss_mb=peak())
        except Exception as exc:  # reported with every other failure at the end of the run
            log.exception("%s failed", task_id)
            return Outcome(task_id, "failed", time.perf_counter() - start, error=exc, peak_rss_mb=peak())
        return Outcome(task_id, "success", time.perf_counter() - start, result, peak_rss_mb=peak())
