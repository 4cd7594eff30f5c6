"""Hard-linked read snapshots of a file-per-partition table's files, so a scan reads the files
it planned with while a run republishes (the torn-read test).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

from lakehouse.storage.paths import DATA_FILE, Location, state_dir, table_dir

SNAPSHOTS = "_snapshots"


SNAPSHOT_REUSE_S = 3600  # well inside vacuum's grace (24 h by default), so a reused one stays


def _pinned(lake: Location, layer: str, table: str, files: list[Location]) -> str:
    """A glob over hard links to the files a scan starts with, so the scan reads those files.

    Polars plans a scan from each file's footer and opens the path again to read it; a
    partition replaced in between (another run publishing) would be read with the old plan
    and the new bytes (a panic, or a mixed read; the torn-read test caught it). A hard link
    made now keeps today's file reachable under a private name for as long as the scan
    needs it: no bytes are copied, and ``vacuum`` removes snapshots after the grace period.
    """
    root = Path(table_dir(lake, layer, table))
    # the same files (path, inode, mtime, size) as a recent snapshot: read that one again
    stats = []
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(f)
            stats.append(f"{Path(f).relative_to(root)}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
    key = hashlib.sha1((f"{layer}/{table}\n" + "\n".join(stats)).encode(), usedforsecurity=False).hexdigest()[:16]
    base = Path(state_dir(lake)) / SNAPSHOTS
    now = int(time.time())
    if base.exists():
        for old in base.glob(f"*-{key}"):
            if now - int(old.name.split("-", 1)[0]) < SNAPSHOT_REUSE_S:
                return str(old / layer / table / "**" / DATA_FILE)
    # built under a private name and renamed into place whole: a concurrent scan of the same
    # files must never find the snapshot half linked (a loaded CI run saw "no files found")
    building = base / f"{now}-tmp{uuid.uuid4().hex}"
    snap = building / layer / table
    for f in files:
        target = snap / Path(f).relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _link(f, target)
        except FileNotFoundError:
            continue  # retired since it was listed: the scan sees the table without it
        except OSError:  # no hard links here (another file system): read the live files
            shutil.rmtree(building, ignore_errors=True)
            return str(root / "**" / DATA_FILE)
    final = base / f"{now}-{key}"
    try:
        os.rename(building, final)
    except OSError:  # another scan of the same files published it first: read that one
        shutil.rmtree(building, ignore_errors=True)
    return str(final / layer / table / "**" / DATA_FILE)


def _link(source: Location, target: Path) -> None:
    """``os.link`` that survives a concurrent replace of ``source``.

    Linux resolves the name to an inode and then refuses to link it with ENOENT if a rename
    replaced that inode meanwhile (its link count fell to 0): the name exists throughout, but
    one link in ~500 made during republishing failed so (measured; the torn-read test saw an
    empty snapshot). Retried while the name exists; a file really retired stays missing.
    """
    for _ in range(100):
        try:
            os.link(source, target)
            return
        except FileNotFoundError:
            if not os.path.exists(source):
                raise
    os.link(source, target)
