"""A process's peak resident memory, per step: what issue 19's "every step at most 4 GB" is read from.

Linux keeps a process's high-water mark of resident memory (``VmHWM`` in ``/proc/self/status``)
and lets the process reset it to the current RSS (writing ``5`` to ``/proc/self/clear_refs``).
Resetting before each step of an in-process run (``lakehouse run``) gives each step its own
peak, as an Airflow task's own process would. ``getrusage``'s ``ru_maxrss`` cannot be reset, so
every later step would report the largest earlier one. Elsewhere (not Linux) both are None.
"""

from __future__ import annotations

STATUS, CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
_before_resets = 0.0  # the largest peak a reset has cleared (``process_peak_mb``)


def reset_peak() -> bool:
    """Make the current RSS the process's peak; False where the kernel does not offer it."""
    global _before_resets
    _before_resets = max(_before_resets, peak_rss_mb() or 0.0)
    try:
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def process_peak_mb() -> float | None:
    """The process's peak RSS since it started, resets included (the kernel's own mark, and
    ``getrusage``'s, restart at each ``reset_peak``)."""
    now = peak_rss_mb()
    return None if now is None else max(now, _before_resets)


def peak_rss_mb() -> float | None:
    """The process's peak RSS in MB (2**20 bytes) since it started or ``reset_peak``; None when unknown."""
    try:
        with open(STATUS) as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(kb / 1024, 1)
