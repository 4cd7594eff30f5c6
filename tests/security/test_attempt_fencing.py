"""Attempt-scoped publishing: once a retry has claimed a task instance, an earlier attempt that
still lives (frozen, cut off from the scheduler) can publish nothing more."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import polars as pl
import pytest

from lakehouse import storage

SCOPE = "retail_daily.silver_orders.scheduled__2026-11-01.-1"


@pytest.fixture(autouse=True)
def _no_claim_leaks():
    yield
    storage.release_attempt()


def _in_another_process(lake, code: str) -> None:
    """What a second worker process does (its own module state, the same lake and locks)."""
    script = "\n".join(["import polars as pl", "from pathlib import Path", "from lakehouse import storage",
                        f"lake = Path({str(lake)!r})", textwrap.dedent(code).strip()])
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_superseded_attempt_publishes_nothing(tmp_path):
    lake = tmp_path / "lake"
    storage.claim_attempt(lake, SCOPE, 1, "run-start-1")
    storage.publish(pl.DataFrame({"v": ["try 1, before the retry"]}), lake, "silver", "orders")
    # the scheduler gave up on try 1 (no heartbeat); try 2 starts on another worker and publishes
    _in_another_process(lake, f"""
        storage.claim_attempt(lake, {SCOPE!r}, 2, "run-start-1")
        storage.publish(pl.DataFrame({{"v": ["try 2"]}}), lake, "silver", "orders")
    """)
    # try 1 wakes up and carries on where it was
    with pytest.raises(storage.StaleAttempt, match="superseded by try 2"):
        storage.publish(pl.DataFrame({"v": ["try 1, late"]}), lake, "silver", "orders")
    with pytest.raises(storage.StaleAttempt):
        storage.write_json(storage.state_path(lake, "watermarks", "erp.json"), {"extracted_until": "late"})
    with pytest.raises(storage.StaleAttempt):
        storage.publish_partitioned(pl.LazyFrame({"d": ["2026-11-01"], "v": [1]}), lake, "gold", "fct_x", "d")
    assert storage.read(lake, "silver", "orders")["v"].to_list() == ["try 2"]
    assert not storage.path_exists(storage.state_path(lake, "watermarks", "erp.json"))
    assert not storage.data_files(lake, "gold", "fct_x")
    # nothing half-written was left behind by the refused publishes
    assert not [p for p in (lake / "silver").rglob("*") if p.name.endswith(".tmp")]


def test_an_older_try_cannot_claim_after_a_newer_one_of_the_same_run(tmp_path):
    lake = tmp_path / "lake"
    storage.claim_attempt(lake, SCOPE, 2, "run-start-1")
    storage.release_attempt()
    with pytest.raises(storage.StaleAttempt, match="try 1 started after try 2"):
        storage.claim_attempt(lake, SCOPE, 1, "run-start-1")
    # a cleared and rerun DAG run (a new generation) starts counting again
    storage.claim_attempt(lake, SCOPE, 1, "run-start-2")
    storage.publish(pl.DataFrame({"v": [1]}), lake, "silver", "orders")


def test_without_a_claim_nothing_is_fenced(tmp_path):
    """The CLI, tests and rebuilds run outside Airflow: no claim, no fence."""
    lake = tmp_path / "lake"
    storage.publish(pl.DataFrame({"v": [1]}), lake, "silver", "orders")
    assert storage.read(lake, "silver", "orders")["v"].to_list() == [1]
