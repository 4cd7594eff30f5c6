"""Upkeep of a lake: vacuum (retired files, killed writers' leftovers, Delta vacuum, old
snapshots) and compaction of Delta tables.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from lakehouse.storage.files import backend
from lakehouse.storage.partition_files import RETIRED, _vacuum_superseded
from lakehouse.storage.paths import Location, is_remote, state_dir, table_dir
from lakehouse.storage.snapshots import SNAPSHOTS
from lakehouse.storage.table_io import _is_delta, delta_tables, tables


def vacuum(lake: Location, grace_hours: float, *, full: bool = True) -> list[Location]:
    """Delete retired files and leftovers of killed writers older than ``grace_hours``.

    The grace period must exceed the longest query, as with Delta Lake's VACUUM: a
    file younger than it may still be read and is kept. Only the tables that are not Delta
    tables (bronze's one-file-per-partition protocol) are walked for retired and temporary
    files; a Delta table's garbage is found by Delta's own vacuum. ``full=False`` leaves out
    the files no Delta commit ever named (a writer killed before its commit, a commit that
    lost a conflict): finding them lists every file of every Delta table, which the daily
    retention does once a week (ADR 0032).
    """
    from lakehouse import delta

    cutoff = time.time() - grace_hours * 3600
    removed: list[Location] = []
    for layer in ("bronze", "silver", "gold"):
        for table in tables(lake, layer):
            root = table_dir(lake, layer, table)
            if _is_delta(root):
                removed += delta.vacuum(root, grace_hours, full=full)
                continue
            for path, mtime in backend(lake).hidden_files(root):
                name = str(path).rsplit("/", 1)[-1]
                if mtime > cutoff:
                    continue
                if name.startswith(RETIRED):
                    if int(name[len(RETIRED):].split("-", 1)[0]) > cutoff:
                        continue
                elif not name.endswith(".tmp"):
                    continue
                backend(path).remove(path)
                removed.append(path)
            if is_remote(lake):
                removed += _vacuum_superseded(root, cutoff)
    snapshots = Path(state_dir(lake)) / SNAPSHOTS if not is_remote(lake) else None
    if snapshots is not None and snapshots.exists():
        for snap in snapshots.iterdir():
            if int(snap.name.split("-", 1)[0]) <= cutoff:
                shutil.rmtree(snap, ignore_errors=True)
    for directory in sorted({p.parent for p in removed if isinstance(p, Path)}, reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()  # a partition folder left empty by retention
    return removed


# A Delta table is compacted once it has this many files under SMALL_FILE_BYTES (each daily
# merge or partition replacement adds one small file per table it touches), into files of
# about COMPACT_BYTES: small enough that a merge rewrites little (silver's files, ADR 0020)
SMALL_FILES, SMALL_FILE_BYTES, COMPACT_BYTES = 32, 4 << 20, 8 << 20


def compact_small_files(lake: Location) -> dict[str, dict]:
    """Compact the Delta tables that gathered ``SMALL_FILES`` small files; the others are left
    alone (a compaction is a new version: cheap, but not free, and not needed every day)."""
    from lakehouse import delta

    done = {name: delta.maintain(root, below_bytes=SMALL_FILE_BYTES, min_files=SMALL_FILES,
                                 target_size=COMPACT_BYTES) for name, root in delta_tables(lake)}
    return {name: metrics for name, metrics in done.items() if metrics is not None}


def optimize_all(lake: Location) -> dict[str, dict]:
    """Compact every Delta table's small files; ``{"layer.table": delta-rs metrics}``."""
    from lakehouse import delta

    return {name: delta.optimize(root) for name, root in delta_tables(lake)}
