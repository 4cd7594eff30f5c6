"""A process's peak resident memory, per step: what issue 19's "every step at most 4 GB" is read from.

Linux keeps a process's high-water mark of resident memory (``VmHWM`` in ``/proc/self/status``)
and lets the process reset it to the current RSS (writing ``5`` to ``/proc/self/clear_refs``).
Resetting at the start of each step of an in-process run (``lakehouse run``) gives each step its
own peak, as an Airflow task's own process would; ``getrusage``'s ``ru_maxrss`` cannot be reset,
so every later step would report the largest earlier one. Measurements nest (a task's peak, and
each gold table's within it): a reset first folds the mark into every measurement still open.
Elsewhere (not Linux) the figures are None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

STATUS, CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
_open: list[list[float]] = []  # the peak so far of each open ``measured`` block, outermost first
_before_resets = 0.0  # the largest mark a reset has cleared (``process_peak_mb``)


def peak_rss_mb() -> float | None:
    """The kernel's mark: peak RSS in MB (2**20 bytes) since the process started or the last reset."""
    try:
        with open(STATUS) as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(kb / 1024, 1)


def _reset() -> None:
    global _before_resets
    mark = peak_rss_mb() or 0.0
    _before_resets = max(_before_resets, mark)
    for cell in _open:
        cell[0] = max(cell[0], mark)
    try:
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
    except OSError:  # not Linux, or /proc read-only: the marks then only grow
        pass


@contextmanager
def measured() -> Iterator[Callable[[], float | None]]:
    """A block's peak RSS: ``with measured() as peak: ...; peak()`` (MB; None where unknown).

    Counts what was resident when the block started (it is held meanwhile), not the peaks of
    what ran before it.
    """
    _reset()
    cell = [0.0]
    _open.append(cell)
    known = peak_rss_mb() is not None

    def peak() -> float | None:
        if not known:
            return None
        # read after the block: its peak as it ended (later resets no longer reach it)
        still_open = any(c is cell for c in _open)  # by identity: two cells may hold equal peaks
        return max(cell[0], peak_rss_mb() or 0.0) if still_open else cell[0]

    try:
        yield peak
    finally:
        cell[0] = max(cell[0], peak_rss_mb() or 0.0)
        _open[:] = [c for c in _open if c is not cell]


def process_peak_mb() -> float | None:
    """The process's peak RSS since it started, resets included."""
    mark = peak_rss_mb()
    return None if mark is None else max(mark, _before_resets)
