"""Attempt-scoped publishing: once a retry has claimed a task instance, an earlier attempt that
still lives (frozen, cut off from the scheduler) can publish nothing more."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time

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


# -- the same fence at the table itself: Delta application transactions ----------------------
# Where the claim document's lock is not shared (hosts writing one object-store lake without a
# shared LAKEHOUSE_LOCK_DIR), an attempt can read its claim as still its own just before a retry
# claims and commits. The table then refuses it: every commit carries the attempt's rank as an
# application transaction of the task instance. ``fencing.fenced`` (the claim-document check) is
# replaced below by what such a host sees: nothing, or the retry committing at that moment.

def _retry_commits(lake) -> None:
    _in_another_process(lake, f"""
        storage.claim_attempt(lake, {SCOPE!r}, 2, "2026-11-02T06:00:00+00:00")
        storage.publish(pl.DataFrame({{"v": ["try 2"]}}), lake, "silver", "orders")
    """)


def _app_version(lake) -> int | None:
    from deltalake import DeltaTable

    return DeltaTable(str(storage.table_dir(lake, "silver", "orders"))).transaction_version(
        storage.fencing.APP_ID_PREFIX + SCOPE)


def test_a_table_refuses_an_attempt_older_than_one_that_committed_there(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    storage.claim_attempt(lake, SCOPE, 1, "2026-11-02T06:00:00+00:00")
    storage.publish(pl.DataFrame({"v": ["try 1, first"]}), lake, "silver", "orders")
    storage.publish(pl.DataFrame({"v": ["try 1, second"]}), lake, "silver", "orders")  # its own: fine
    assert _app_version(lake) == storage.fencing.attempt_rank(1, "2026-11-02T06:00:00+00:00")
    _retry_commits(lake)
    assert _app_version(lake) == storage.fencing.attempt_rank(2, "2026-11-02T06:00:00+00:00")
    monkeypatch.setattr(storage.fencing, "fenced", contextlib.nullcontext)  # the claim check raced
    with pytest.raises(storage.StaleAttempt, match="newer attempt"):
        storage.publish(pl.DataFrame({"v": ["try 1, late"]}), lake, "silver", "orders")
    with pytest.raises(storage.StaleAttempt, match="newer attempt"):
        storage.publish_partitioned(pl.LazyFrame({"d": ["2026-11-01"], "v": [1]}), lake, "silver", "orders", "d")
    assert storage.read(lake, "silver", "orders")["v"].to_list() == ["try 2"]


def test_a_retry_committing_between_a_zombies_read_and_its_commit_wins(tmp_path, monkeypatch):
    """The race itself: try 1 opened the table, then try 2 committed, then try 1 commits on what
    it read. Delta's conflict checker sees both commits carry the task instance's app id."""
    lake = tmp_path / "lake"
    storage.claim_attempt(lake, SCOPE, 1, "2026-11-02T06:00:00+00:00")
    storage.publish(pl.DataFrame({"v": ["try 1, first"]}), lake, "silver", "orders")

    @contextlib.contextmanager
    def retry_commits_meanwhile():
        _retry_commits(lake)  # after try 1 opened the table (``delta._write``), before it commits
        yield

    monkeypatch.setattr(storage.fencing, "fenced", retry_commits_meanwhile)
    with pytest.raises(storage.StaleAttempt, match="newer attempt"):
        storage.publish(pl.DataFrame({"v": ["try 1, late"]}), lake, "silver", "orders")
    assert storage.read(lake, "silver", "orders")["v"].to_list() == ["try 2"]


def test_attempts_rank_by_run_start_then_try():
    rank = storage.fencing.attempt_rank
    # a retry outranks its try; a cleared and rerun DAG run (started later) outranks every try
    # of the run before, whatever its try number (Airflow counts on; a new metadata DB restarts)
    assert rank(1, "2026-11-02 06:00:00+00:00") < rank(2, "2026-11-02T06:00:00Z") < rank(1, "2026-11-03T06:00:00Z")
    assert rank(3, "") == 3 and rank(3, "not a time") == 3


def test_application_transactions_expire_with_the_tables_retention(tmp_path, monkeypatch):
    """A transaction per task instance and table would grow every log and checkpoint by one a
    day: the tables keep them for ``TXN_RETENTION`` (30 days); Delta drops older ones."""
    from deltalake import DeltaTable

    lake = tmp_path / "lake"
    storage.publish(pl.DataFrame({"v": ["created outside Airflow"]}), lake, "silver", "orders")
    table = DeltaTable(str(storage.table_dir(lake, "silver", "orders")))
    assert table.metadata().configuration["delta.setTransactionRetentionDuration"] == "interval 30 days"
    now = time.time()
    monkeypatch.setattr(storage.fencing.time, "time", lambda: now - 31 * 86400)
    storage.claim_attempt(lake, SCOPE, 1, "")
    storage.publish(pl.DataFrame({"v": ["31 days ago"]}), lake, "silver", "orders")
    monkeypatch.setattr(storage.fencing.time, "time", lambda: now)
    storage.release_attempt()
    storage.claim_attempt(lake, SCOPE + ".today", 1, "")
    storage.publish(pl.DataFrame({"v": ["today"]}), lake, "silver", "orders")
    table.update_incremental()
    prefix = storage.fencing.APP_ID_PREFIX
    assert table.transaction_version(prefix + SCOPE) is None  # expired: not in the snapshot
    assert table.transaction_version(prefix + SCOPE + ".today") == 1
