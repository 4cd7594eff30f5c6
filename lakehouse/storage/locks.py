"""The one inter-process lock: read-modify-write of shared state, and Delta table creation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lakehouse.storage.paths import Location, _check_name, is_remote, state_dir


@contextlib.contextmanager
def locked(lake: Location, name: str) -> Iterator[None]:
    """Exclusive inter-process lock for read-modify-write of shared state.

    A local lake locks a file inside it, so every process sharing the lake's disk
    takes turns. Object stores have no locks: an object-store lake locks files in
    ``LAKEHOUSE_LOCK_DIR``, a directory every worker must share (a volume in compose),
    else on this machine's disk, which serializes one machine's processes only (ADR 0013).
    """
    key = hashlib.sha256(str(lake).encode()).hexdigest()[:16]
    if os.environ.get("LAKEHOUSE_LOCK_DIR"):
        lock_dir = Path(os.environ["LAKEHOUSE_LOCK_DIR"]) / key
    elif is_remote(lake):
        lock_dir = Path(tempfile.gettempdir()) / "lakehouse-locks" / key
    else:
        lock_dir = Path(state_dir(lake)) / "_locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{_check_name('lock', name)}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
