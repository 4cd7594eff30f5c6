"""Bronze's table protocol: one Parquet file per partition (ADR 0001, 0013). Silver and gold
are Delta tables (``table_io``, ADR 0019).

Layout: ``<lake>/<layer>/<table>/[<key>=<value>/...]data.parquet``. A partition is exactly one
Parquet file, so publishing it is one atomic ``os.replace`` of a fully written, fsynced
temporary file in the same directory. Readers see the old partition or the new one, never a
partial, mixed or missing one, and no file of a replaced partition stays visible.

On an object store there is no rename, and overwriting one key is not enough: readers fetch a
Parquet file in several ranged GETs, and a replacement between two of them mixes versions (the
object-store test caught exactly that). So objects are immutable: each publish uploads a new
``data-<time_ns>-<random>.parquet`` in one PUT, the newest file of a partition is its content,
readers resolve that file once and keep reading it, and superseded files are deleted by
``vacuum`` after the grace period.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from lakehouse.storage.fencing import fenced
from lakehouse.storage.files import _fsync_path, filesystem, modified_time, put_file
from lakehouse.storage.paths import (
    DATA_FILE,
    Location,
    _uri,
    is_remote,
    join,
    partition_dir,
    table_dir,
)

_OBJECT = re.compile(r"^data-\d{20}-[0-9a-f]{8}\.parquet$")


def _new_object(target_dir: str) -> str:
    """A fresh immutable object name; names sort in publish order (a lock orders writers)."""
    return f"{target_dir}/data-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def _objects(base: str) -> dict[str, list[str]]:
    """``{partition dir: [data objects, oldest first]}`` under ``base`` (remote lakes)."""
    fs = filesystem(base)
    found: dict[str, list[str]] = {}
    for key in fs.glob(f"{base.rstrip('/')}/**/data-*.parquet"):
        parent, name = key.rsplit("/", 1)
        if _OBJECT.match(name):
            found.setdefault(_uri(base, parent), []).append(name)
    return {d: sorted(names) for d, names in found.items()}


def data_file(lake: Location, layer: str, table: str, partition: Mapping[str, str] | None = None) -> Location:
    """The one file holding a partition (or an unpartitioned table): on an object store,
    its newest object (``<dir>/data.parquet``, which does not exist, when there is none)."""
    target_dir = partition_dir(lake, layer, table, partition)
    if is_remote(target_dir):
        names = _objects(str(target_dir)).get(str(target_dir))
        if names:
            return f"{target_dir}/{names[-1]}"
    return join(target_dir, DATA_FILE)


@contextlib.contextmanager
def _atomic_file(target_dir: Location) -> Iterator[Path]:
    """Yield a temp path; on success it becomes ``target_dir/data.parquet`` in one atomic step.

    Local: a hidden temp file in ``target_dir``, fsynced and renamed in. Object store: a
    local temp file uploaded as one object (a single PUT, or a multipart upload that S3,
    GCS and Azure make visible only when it completes), so there is no partial object.
    """
    if is_remote(target_dir):
        with tempfile.TemporaryDirectory(prefix="lakehouse-put-") as tmp_dir:
            tmp = Path(tmp_dir) / DATA_FILE
            yield tmp
            _install(tmp, target_dir)
        return
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for stale in target_dir.glob(f".{DATA_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = target_dir / f".{DATA_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        _fsync_path(tmp)
        with fenced():
            os.replace(tmp, target_dir / DATA_FILE)
        _fsync_path(target_dir)
    finally:
        tmp.unlink(missing_ok=True)


def _install(local: Path, target_dir: Location) -> None:
    """Make a finished local file the content of a partition: ``data.parquet`` on disk, a
    fresh immutable object on an object store."""
    put_file(local, _new_object(str(target_dir)) if is_remote(target_dir) else join(target_dir, DATA_FILE))


RETIRED = ".retired-"


def retire(path: Location) -> Location:
    """Take a published file out of its table without breaking readers that have it open.

    The file is renamed to a hidden ``.retired-<unix time>-<name>`` next to it: globbing
    readers stop seeing it at once, a query that already opened it keeps reading it
    (POSIX keeps the inode alive), and ``vacuum`` deletes it after the grace period.
    On an object store the object is copied to the hidden name, then deleted (a GET in
    flight completes; bucket versioning keeps the bytes as well).
    """
    name = f"{RETIRED}{int(time.time())}-{uuid.uuid4().hex[:8]}-{DATA_FILE}"
    if is_remote(path):
        parent = str(path).rsplit("/", 1)[0]
        target = f"{parent}/{name}"
        fs = filesystem(path)
        fs.copy(str(path), target)
        for key in fs.glob(f"{parent}/data-*.parquet"):
            fs.rm_file(key)
        return target
    path = Path(path)
    target = path.with_name(name)
    os.replace(path, target)
    _fsync_path(path.parent)
    return target


def _vacuum_superseded(base: Location, cutoff: float) -> list[Location]:
    """Delete objects superseded (by a newer object of their partition) before ``cutoff``."""
    fs = filesystem(base)
    if not fs.exists(base):
        return []
    removed: list[Location] = []
    for directory, names in _objects(str(base)).items():
        for old, newer in itertools.pairwise(names):
            if modified_time(f"{directory}/{newer}") <= cutoff:
                fs.rm_file(f"{directory}/{old}")
                removed.append(f"{directory}/{old}")
    return removed


def hive_values(lake: Location, layer: str, table: str, file: Location) -> dict[str, str]:
    """``{key: value}`` of the ``key=value`` folders between a table's root and one of its files."""
    root = str(table_dir(lake, layer, table)).rstrip("/")
    return dict(p.split("=", 1) for p in str(file)[len(root) + 1:].split("/")[:-1])
