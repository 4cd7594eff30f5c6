"""Attempt fencing (ADR 0016): a superseded task attempt publishes nothing.

Two layers. The claim document (``claim_attempt``, checked under a lock by ``fenced``) stops a
superseded attempt before any publish, the newer attempt's or not yet. Delta commits also carry
the attempt as an application transaction (``delta_commit_properties``: app id = the task
instance, version = the attempt's rank), so at the table itself an attempt older than one that
has committed there is refused, and two attempts committing at once conflict in Delta's
conflict checker: this holds where the lock cannot, across hosts sharing an object-store lake
without a shared ``LAKEHOUSE_LOCK_DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lakehouse.storage import files
from lakehouse.storage.locks import locked
from lakehouse.storage.paths import Location, state_path


class StaleAttempt(RuntimeError):
    """A newer attempt of the same task instance has started: this one must publish nothing."""


# app ids of the application transactions this lake writes: ``lakehouse/<task instance>``
APP_ID_PREFIX = "lakehouse/"
# how long a table keeps an attempt's application transaction (``delta.setTransactionRetentionDuration``;
# Delta drops older ones from its snapshots and checkpoints, so a table's log does not grow a
# transaction per task and day for ever). Past it only the claim document fences a zombie
TXN_RETENTION = "interval 30 days"


@dataclass(frozen=True)
class _Claim:
    lake: Location
    scope: str
    token: str
    try_number: int
    rank: int


# the attempt this process runs, set by ``claim_attempt``
_fence: _Claim | None = None


def attempt_rank(try_number: int, generation: str) -> int:
    """An attempt's place among the attempts of its task instance, as a Delta transaction
    version: the DAG run's start (its generation: a cleared run starts again, later) in
    milliseconds, then the try number. A generation that is not a timestamp counts as 0."""
    started = 0
    if generation:
        with contextlib.suppress(ValueError):
            started = int(datetime.fromisoformat(generation).timestamp() * 1000)
    return started * 1000 + min(max(try_number, 0), 999)


def _attempt_file(lake: Location, scope: str) -> Location:
    return state_path(lake, "attempts", hashlib.sha256(scope.encode()).hexdigest()[:24] + ".json")


def _attempt_lock(scope: str) -> str:
    return "attempt_" + hashlib.sha256(scope.encode()).hexdigest()[:16]


def claim_attempt(lake: Location, scope: str, try_number: int, generation: str = "") -> str:
    """Make this process the only attempt of ``scope`` (a task instance) allowed to publish.

    Writes a fresh token for the scope; every later publish of this process (partition
    renames, object uploads, state documents) checks under a lock that the token is still
    its own. A retry started while an earlier attempt still lives (a frozen or cut-off
    worker that Airflow gave up on) claims the scope anew, and from then on the earlier
    attempt's publishes raise ``StaleAttempt`` instead of overwriting the retry's output.
    A claim older than the recorded one of the same ``generation`` (the DAG run's start) is
    refused. Returns the token.
    """
    global _fence
    token = uuid.uuid4().hex
    path = _attempt_file(lake, scope)
    with locked(lake, _attempt_lock(scope)):
        current = files.read_json(path, {})
        if current.get("generation") == generation and current.get("try_number", 0) > try_number:
            raise StaleAttempt(f"{scope}: try {try_number} started after try {current['try_number']}; "
                               "not running a superseded attempt")
        files._write_json(path, {"scope": scope, "try_number": try_number, "generation": generation,
                           "token": token, "pid": os.getpid(), "claimed_at": time.time()})
    _fence = _Claim(lake, scope, token, try_number, attempt_rank(try_number, generation))
    return token


def release_attempt() -> None:
    """Forget this process's claim (a process that runs several tasks, as ``dags test`` does)."""
    global _fence
    _fence = None


@contextlib.contextmanager
def fenced() -> Iterator[None]:
    """Around a publish's final step: hold the scope's lock and check the claim is still ours."""
    if _fence is None:
        yield
        return
    lake, scope, token = _fence.lake, _fence.scope, _fence.token
    with locked(lake, _attempt_lock(scope)):
        current = files.read_json(_attempt_file(lake, scope), {})
        if current.get("token") != token:
            raise StaleAttempt(
                f"{scope}: this attempt was superseded by try {current.get('try_number')} (pid "
                f"{current.get('pid')}); nothing more is published by it (was it frozen or cut off?)")
        yield


def delta_commit_properties(table: Any | None) -> dict[str, Any]:
    """Keyword arguments for a Delta commit based on ``table`` (the snapshot the commit is made
    on; None when it creates the table): none outside a claimed attempt, else
    ``commit_properties`` carrying this attempt's application transaction.

    Raises ``StaleAttempt`` when ``table`` already holds a commit of a newer attempt of the
    same task instance. A newer attempt committing after this snapshot is caught by Delta's
    conflict checker instead (both commits carry the same app id): see ``refused_by_newer``.
    """
    if _fence is None:
        return {}
    from deltalake import CommitProperties, Transaction

    app_id = APP_ID_PREFIX + _fence.scope
    if table is not None:
        _refuse_if_newer(table.transaction_version(app_id), table)
    txn = Transaction(app_id, _fence.rank, last_updated=int(time.time() * 1000))
    return {"commit_properties": CommitProperties(app_transactions=[txn])}


def refused_by_newer(table: Any) -> None:
    """After a commit of this attempt failed on a concurrent transaction: ``StaleAttempt`` when
    ``table`` (reloaded) holds a newer attempt's commit of the task instance; else nothing (the
    caller re-raises: an older attempt won the race, the task fails and its retry ranks higher)."""
    if _fence is not None:
        _refuse_if_newer(table.transaction_version(APP_ID_PREFIX + _fence.scope), table)


def _refuse_if_newer(recorded: int | None, table: Any) -> None:
    assert _fence is not None
    if recorded is not None and recorded > _fence.rank:
        raise StaleAttempt(
            f"{_fence.scope}: {table.table_uri} holds a commit of a newer attempt (rank {recorded}, this "
            f"try {_fence.try_number} is rank {_fence.rank}); nothing more is committed by this one")


def claimed() -> str | None:
    """The task instance this process's attempt has claimed, if any."""
    return None if _fence is None else _fence.scope
