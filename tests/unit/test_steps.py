"""The step list is the one wiring object: the DAG, the local runner and rebuild read it."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from lakehouse import steps, tasks
from lakehouse.config import load_domain
from tests.conftest import PROJECT

DAY = date(2026, 11, 2)


def _cfg(name: str = "retail"):
    return load_domain(PROJECT / "configs" / name)


def test_every_step_comes_after_its_upstream_and_names_are_unique():
    for pipeline in (steps.DAILY, steps.TRAINING):
        steps.check_order(pipeline)
        names = [s.name for s in pipeline]
        assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="before its upstream"):
        steps.check_order(list(reversed(steps.DAILY)))


@pytest.mark.parametrize("domain", ["retail", "tpch"])
def test_the_airflow_dag_is_the_declared_list(domain):
    """Task ids and every edge of the DAG are exactly what the step list says."""
    from lakehouse.dag_factory import build_dag

    cfg = _cfg(domain)
    dag = build_dag(PROJECT / "configs" / domain)
    declared = steps.select(steps.DAILY, cfg)
    expected = {s.task_id(i): set(steps.upstream_task_ids(declared, s, i, cfg))
                for s in declared for i in s.items(cfg)}
    assert {t.task_id: set(t.upstream_task_ids) for t in dag.tasks} == expected
    for s in declared:
        for i in s.items(cfg):
            task = dag.get_task(s.task_id(i))
            assert task.trigger_rule == s.trigger_rule
            # a task stuck in Python fails at the domain's limit (lakehouse.watchdog for native code)
            assert task.execution_timeout.total_seconds() == cfg.task_timeout_minutes * 60
            if s.retries is not None:
                assert task.retries == s.retries


def test_an_entity_waits_for_its_own_source_only():
    cfg = _cfg()
    silver = next(s for s in steps.DAILY if s.name == "silver")
    entity = cfg.contracts[0]
    assert steps.upstream_task_ids(steps.DAILY, silver, entity.entity, cfg) == [f"extract_{entity.source}"]


def _fake(monkeypatch, fail: set[str] = frozenset(), skip: set[str] = frozenset()) -> list[str]:
    """Replace every action by a recorder; ``fail``/``skip`` name task ids that raise."""
    ran: list[str] = []

    def action_for(step: steps.Step):
        def action(ctx, item=None):
            task_id = step.task_id(item)
            ran.append(task_id)
            if task_id in fail:
                raise ValueError(f"{task_id} broke")
            if task_id in skip:
                raise tasks.Skipped("nothing to do")
            return ctx.failed_upstream or task_id
        return action

    fakes = [dataclasses.replace(s, action=action_for(s)) for s in steps.DAILY]
    monkeypatch.setattr(steps, "DAILY", fakes)
    return ran


def test_a_failed_entity_does_not_stop_the_others_and_every_failure_is_reported(monkeypatch):
    cfg = _cfg()
    ran = _fake(monkeypatch, fail={"silver_orders", "extract_inventory_drop"})
    ctx = steps.RunContext(cfg=cfg, run_date=DAY, run_id="t")
    with pytest.raises(steps.StepsFailed) as err:
        steps.run_local(steps.DAILY, ctx)
    outcomes = err.value.outcomes
    assert set(err.value.failed) == {"silver_orders", "extract_inventory_drop"}
    assert "silver_orders" in str(err.value) and "extract_inventory_drop" in str(err.value)
    # every entity of the healthy sources built; the dropped source's entity never ran
    assert outcomes["silver_order_lines"].state == "success"
    assert outcomes["silver_inventory_counts"].state == "upstream_failed"
    assert "silver_inventory_counts" not in ran
    # gold waits for every entity: it and what follows it did not run
    assert outcomes["build_gold"].state == "upstream_failed"
    assert outcomes["announce_backfill"].state == "upstream_failed"  # none_failed still needs no failure
    # all_done: freshness and the dashboard run whatever happened upstream (on-call needs them then)
    assert outcomes["check_freshness"].state == outcomes["write_report"].state == "success"
    assert ran[-1] == "write_report"
    # ... and they are told what failed before them (freshness stays quiet about that cause)
    blocked = {k for k, o in outcomes.items() if o.state in ("failed", "upstream_failed")
               and list(outcomes).index(k) < list(outcomes).index("check_freshness")}
    assert set(outcomes["check_freshness"].result) == blocked and "silver_orders" in blocked


def test_trigger_rules_match_airflow_when_scoring_skips(monkeypatch):
    """A skipped scoring (no champion yet) skips nothing under none_failed: the report and the
    announcement still run, as they do in the DAG."""
    cfg = _cfg()
    ran = _fake(monkeypatch, skip={"score_forecast"})
    outcomes = steps.run_local(steps.DAILY, steps.RunContext(cfg=cfg, run_date=DAY, run_id="t"))
    assert outcomes["score_forecast"].state == "skipped"
    assert outcomes["write_report"].state == outcomes["announce_backfill"].state == "success"
    # declared order, every task once
    assert ran == list(outcomes) and len(ran) == len(set(ran))


def test_only_keeps_the_declared_order_and_drops_edges_to_left_out_steps(monkeypatch):
    cfg = _cfg()
    ran = _fake(monkeypatch)
    steps.run_local(steps.DAILY, steps.RunContext(cfg=cfg, run_date=DAY, run_id="t"), only=steps.REBUILD_STEPS)
    assert ran == [f"silver_{c.entity}" for c in cfg.contracts] + ["build_gold", "publish_catalog"]


def test_a_domain_without_a_model_has_no_scoring_step():
    assert "score_forecast" not in [s.name for s in steps.select(steps.DAILY, _cfg("tpch"))]
    assert steps.select(steps.TRAINING, _cfg("tpch")) == []


def test_each_task_reports_its_own_peak_memory_not_an_earlier_tasks():
    """``lakehouse run`` runs every task in one process; each outcome's peak RSS is that task's
    (the high-water mark reset before it), checked against a known allocation."""
    from lakehouse import memory

    size_mb = 400

    def big(ctx):
        block = b"\x01" * (size_mb * 2**20)  # written, so resident
        return len(block)

    pipeline = [steps.Step("big", big), steps.Step("small", lambda ctx: None, upstream=("big",))]
    before = memory.peak_rss_mb()
    outcomes = steps.run_local(pipeline, steps.RunContext(cfg=_cfg(), run_date=DAY, run_id="t"))
    assert before is not None, "Linux keeps VmHWM in /proc/self/status"
    peak_big, peak_small = outcomes["big"].peak_rss_mb, outcomes["small"].peak_rss_mb
    assert peak_big >= peak_small + 0.9 * size_mb, (peak_big, peak_small)
    assert peak_small < before + 0.5 * size_mb  # reset: the big task's peak is not carried over
    assert memory.process_peak_mb() >= peak_big  # ... but the process's own is kept


def test_a_measurement_inside_a_task_leaves_the_tasks_peak_whole():
    """gold measures each table inside the build_gold task: the task's peak still covers them."""
    from lakehouse import memory

    size_mb = 300
    with memory.measured() as task:
        with memory.measured() as first:
            block = b"\x01" * (size_mb * 2**20)
            del block
        with memory.measured() as second:
            pass
    assert first() >= second() + 0.9 * size_mb, (first(), second())
    assert task() >= first()  # the inner reset did not lose the outer block's peak
