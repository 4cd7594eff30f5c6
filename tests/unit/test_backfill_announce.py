"""A finished backfill is announced exactly once, whatever the concurrency and timing."""

from __future__ import annotations

import random
import threading
import time

import pytest

from lakehouse.backfill import others_pending, should_announce


def test_pending_runs_are_the_undecided_backfill_runs():
    states = {"backfill__1": "success", "backfill__2": "running", "backfill__3": None,
              "backfill__4": "running", "scheduled__5": None, "backfill__6": "upstream_failed"}
    # run 2 is deciding; run 4 decided already (in the ledger) but has not reported yet
    assert others_pending("backfill__2", states, decided={"backfill__4"}) == ["backfill__3"]
    assert others_pending("backfill__3", states | {"backfill__3": "running"},
                          decided={"backfill__2", "backfill__4"}) == []


def test_scheduled_and_manual_runs_never_announce(tmp_path):
    announce, why = should_announce(tmp_path, "d", "scheduled__2026-11-01", lambda: {})
    assert not announce and "not a backfill" in why


@pytest.mark.parametrize("seed", range(6))
def test_concurrent_runs_announce_exactly_once(tmp_path, seed):
    """Runs decide concurrently and report their state late, as Airflow's tasks do."""
    rng = random.Random(seed)
    runs = [f"backfill__2026-10-{d:02d}" for d in range(1, 11)]
    states: dict[str, str | None] = dict.fromkeys(runs)
    guard = threading.Lock()
    announced: list[str] = []

    def snapshot() -> dict[str, str | None]:
        with guard:
            return dict(states)

    def run(run_id: str, start_after: float, report_after: float) -> None:
        time.sleep(start_after)
        with guard:
            states[run_id] = "running"
        ok, _ = should_announce(tmp_path, "retail_daily", run_id, snapshot)
        time.sleep(report_after)  # the state reaches the API server after the task returns
        with guard:
            states[run_id] = "success" if ok else "skipped"
        if ok:
            announced.append(run_id)

    threads = [threading.Thread(target=run, args=(r, rng.uniform(0, 0.05), rng.uniform(0, 0.05)))
               for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(announced) == 1
