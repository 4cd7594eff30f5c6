"""A task stuck in native code ends, with its threads' stacks in the log (lakehouse.watchdog).

The deadlock below is real: a thread waits in C (``pthread_mutex_lock`` on a mutex it holds,
through ctypes, which releases the GIL) and never returns to the interpreter, as Polars' threads
did at seed scale (issue 19). Airflow's ``execution_timeout`` is a SIGALRM handler: it cannot end
such a task, which the first test shows; the watchdog does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import date

from lakehouse import steps, watchdog

DEADLOCK = textwrap.dedent("""
    import ctypes, ctypes.util

    def deadlocked_in_native_code():
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER on glibc
        libc.pthread_mutex_lock(mutex)
        libc.pthread_mutex_lock(mutex)  # a default mutex locked twice: waits for ever, in C
""")


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DEADLOCK + textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ended_within(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def test_a_signal_timeout_cannot_end_a_task_deadlocked_in_native_code():
    """What Airflow's execution_timeout does (a SIGALRM handler raising), on the same deadlock."""
    proc = _start("""
        import signal
        def timed_out(*_):
            raise TimeoutError("execution_timeout")
        signal.signal(signal.SIGALRM, timed_out)
        signal.alarm(1)
        deadlocked_in_native_code()
    """)
    assert not _ended_within(proc, 5)  # still stuck 4 s after its timeout: the handler never ran


def test_the_hard_limit_ends_it_and_logs_every_threads_stack():
    started = time.monotonic()
    proc = _start("""
        from lakehouse import watchdog
        with watchdog.hard_limit(1.0, "silver_orders"):
            deadlocked_in_native_code()
    """)
    assert _ended_within(proc, 30), "the watchdog did not end the deadlocked process"
    assert proc.returncode == 1 and time.monotonic() - started < 30
    err = proc.stderr.read()
    assert "Timeout" in err and "deadlocked_in_native_code" in err, err[-2000:]


def test_a_task_that_finishes_in_time_is_not_touched(tmp_path):
    proc = _start("""
        import time
        from lakehouse import watchdog
        with watchdog.hard_limit(1.0, "quick"):
            pass
        time.sleep(2)  # past the limit: it was cancelled when the task ended
        print("still here")
    """)
    assert _ended_within(proc, 30) and proc.returncode == 0 and "still here" in proc.stdout.read()


def test_every_step_runs_under_the_domains_limit(tmp_path, monkeypatch):
    """``Step.call`` (the DAG's tasks and ``lakehouse run``) arms the hard limit from the domain's
    ``task_timeout_minutes``, and the DAG's tasks carry it as their execution_timeout."""
    from lakehouse.config import load_domain
    from tests.conftest import CONFIG_DIR

    cfg = load_domain(CONFIG_DIR).model_copy(update={"task_timeout_minutes": 30})
    armed: list[tuple[float, str]] = []

    class Recorded:
        def __init__(self, seconds: float, what: str) -> None:
            armed.append((seconds, what))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(watchdog, "hard_limit", Recorded)
    step = replace(steps.DAILY[0], action=lambda ctx, item: f"ran {item}")
    ctx = steps.RunContext(cfg=cfg, run_date=date(2026, 11, 1), run_id="t")
    assert step.call(ctx, "erp") == "ran erp"
    assert armed == [(30 * 60 + 120, "extract_erp")]
    assert watchdog.hard_limit_s(60) == 66  # a short limit gets a tenth more, not 2 minutes

