"""A hard time limit for a task: a task stuck in native code ends, with every thread's stack.

Airflow's ``execution_timeout`` raises ``AirflowTaskTimeout`` from a SIGALRM handler, and Python
runs signal handlers only between bytecodes of the main thread. A task whose main thread waits
inside a library's native code for ever (a deadlock in a thread pool: issue 19 saw Polars'
threads all waiting on futexes at seed scale) never returns to the interpreter, so the timeout
never fires and the supervisor heartbeats for the hung task indefinitely: the run never ends
and nobody is paged. ``faulthandler``'s watchdog is a C thread that needs no GIL: past the
limit it writes every Python thread's stack to the task's log (what an upstream report needs)
and ends the process, so the task fails, is retried, and alerts like any failure.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)

# past the soft limit (Airflow's execution_timeout, which stops a task stuck in Python cleanly)
# the hard one leaves this much more before ending the process
GRACE_S = 120.0


def hard_limit_s(soft_limit_s: float) -> float:
    """The hard limit for a task whose soft limit is ``soft_limit_s``: a tenth more, at most ``GRACE_S``."""
    return soft_limit_s + min(GRACE_S, soft_limit_s / 10)


@contextlib.contextmanager
def hard_limit(seconds: float, what: str) -> Iterator[None]:
    """End this process if ``what`` has not finished after ``seconds``: every thread's stack is
    written to stderr first, then the process exits with status 1.

    One limit per process at a time (``faulthandler`` keeps one timer): tasks run one after the
    other, in their own process under Airflow and in turn under ``lakehouse run``.
    """
    stream = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    try:
        faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
    except (ValueError, OSError, AttributeError) as exc:  # no file descriptor to write to: run unguarded
        log.warning("%s: no hard time limit (%s)", what, exc)
        yield
        return
    log.debug("%s: hard time limit %.0f s (past it every thread's stack is logged and the process ends)",
              what, seconds)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
