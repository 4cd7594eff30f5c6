"""Attempt fencing (ADR 0016): a superseded task attempt publishes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator

from lakehouse.storage import files
from lakehouse.storage.locks import locked
from lakehouse.storage.paths import Location, state_path


class StaleAttempt(RuntimeError):
    """A newer attempt of the same task instance has started: this one must publish nothing."""


# (lake, scope, token) of the attempt this process runs, set by ``claim_attempt``
_fence: tuple[Location, str, str] | None = None


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
    _fence = (lake, scope, token)
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
    lake, scope, token = _fence
    with locked(lake, _attempt_lock(scope)):
        current = files.read_json(_attempt_file(lake, scope), {})
        if current.get("token") != token:
            raise StaleAttempt(
                f"{scope}: this attempt was superseded by try {current.get('try_number')} (pid "
                f"{current.get('pid')}); nothing more is published by it (was it frozen or cut off?)")
        yield
