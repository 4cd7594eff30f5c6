"""The one I/O module: where tables live, how partitions are published, how they are read.

Layout: ``<lake>/<layer>/<table>/[<key>=<value>/...]data.parquet``. A partition is
exactly one Parquet file, so publishing it is one atomic ``os.replace`` of a fully
written, fsynced temporary file in the same directory (ADR 0001). Readers therefore
see the old partition or the new one, never a partial, mixed or missing one, and no
file of a replaced partition stays visible.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

DATA_FILE = "data.parquet"
LAYERS = ("bronze", "silver", "gold", "_state")
# Columns whose value legitimately differs between two identical runs (wall clock, run id).
VOLATILE_COLUMNS = frozenset({"_ingested_at", "_run_id"})
_PART_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class StorageError(RuntimeError):
    """A path, partition value or publish step was refused."""


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise StorageError(f"{kind} {value!r} is not a plain lower-case identifier")
    return value


def _check_part_value(key: str, value: str) -> str:
    if not _PART_VALUE.match(value) or value in {".", ".."}:
        raise StorageError(f"partition value {key}={value!r} has characters outside [A-Za-z0-9_.:+-]")
    return value


def table_dir(lake: Path, layer: str, table: str) -> Path:
    """Directory of a table; names are validated so config can't escape the lake."""
    if layer not in LAYERS:
        raise StorageError(f"unknown layer {layer!r}; expected one of {LAYERS}")
    return Path(lake) / layer / _check_name("table", table)


def partition_dir(lake: Path, layer: str, table: str, partition: Mapping[str, str] | None = None) -> Path:
    path = table_dir(lake, layer, table)
    for key, value in (partition or {}).items():
        path = path / f"{_check_name('partition key', key)}={_check_part_value(key, str(value))}"
    return path


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(target_dir: Path) -> Iterator[Path]:
    """Yield a hidden temp path in ``target_dir``; on success fsync it and rename it in."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for stale in target_dir.glob(f".{DATA_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = target_dir / f".{DATA_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, target_dir / DATA_FILE)
        _fsync_path(target_dir)
    finally:
        tmp.unlink(missing_ok=True)


def publish(
    frame: pl.LazyFrame | pl.DataFrame,
    lake: Path,
    layer: str,
    table: str,
    partition: Mapping[str, str] | None = None,
) -> Path:
    """Write ``frame`` as the (whole) content of one partition, atomically.

    LazyFrames are streamed with ``sink_parquet`` so memory stays bounded. The
    temporary file is hidden (leading dot, ``.tmp`` suffix) so globbing readers
    never pick it up; leftovers of a killed writer are removed on the next publish.
    """
    target_dir = partition_dir(lake, layer, table, partition)
    with _atomic_file(target_dir) as tmp:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(tmp, compression="zstd", statistics=True)
        else:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
    return target_dir / DATA_FILE


def publish_batches(
    batches: Iterable[pl.DataFrame],
    lake: Path,
    layer: str,
    table: str,
    partition: Mapping[str, str] | None = None,
) -> int:
    """Stream DataFrame batches into one partition file, atomically; returns the row count.

    Later batches are cast to the first batch's schema, so a source that yields
    consistent types (as the extractors do) writes one well-typed file.
    """
    target_dir = partition_dir(lake, layer, table, partition)
    rows = 0
    with _atomic_file(target_dir) as tmp:
        writer: pq.ParquetWriter | None = None
        schema: pl.Schema | None = None
        try:
            for batch in batches:
                if writer is None:
                    schema = batch.schema
                    writer = pq.ParquetWriter(tmp, batch.to_arrow().schema, compression="zstd")
                elif batch.schema != schema:
                    batch = batch.select(schema.names()).cast(dict(schema))
                writer.write_table(batch.to_arrow())
                rows += batch.height
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pl.DataFrame().write_parquet(tmp)
    return rows


def publish_partitioned(frame: pl.LazyFrame, lake: Path, layer: str, table: str, by: str) -> dict[str, int]:
    """Publish ``frame`` as the whole table, one partition per value of ``by``, rewriting only what changed.

    The frame is streamed into a staging area (one file per partition), then each
    partition whose bytes differ from the published one is swapped in with the usual
    atomic rename; identical partitions are left untouched (same file, same inode),
    and published partitions the frame no longer has are retired (see ``retire``).
    Each partition is atomic; a reader querying during the swap may see some
    partitions of the new state next to others of the old one, as with any
    Hive-partitioned table. Returns counts of ``written``, ``unchanged`` and ``retired``.
    """
    _check_name("partition key", by)
    staging = Path(lake) / "_state" / "_staging" / uuid.uuid4().hex
    try:
        frame.sink_parquet(pl.PartitionBy(staging, key=by, include_key=False), mkdir=True,
                           compression="zstd", statistics=True)
        staged = {d.name.split("=", 1)[1]: next(d.glob("*.parquet")) for d in staging.glob(f"{by}=*")}
        counts = {"written": 0, "unchanged": 0, "retired": 0}
        for value, new in sorted(staged.items()):
            target_dir = partition_dir(lake, layer, table, {by: value})
            old = target_dir / DATA_FILE
            if old.exists() and _same_bytes(old, new):
                counts["unchanged"] += 1
                continue
            target_dir.mkdir(parents=True, exist_ok=True)
            _fsync_path(new)
            os.replace(new, old)
            _fsync_path(target_dir)
            counts["written"] += 1
        for part in partitions(lake, layer, table):
            if part.get(by) not in staged:
                retire(partition_dir(lake, layer, table, part) / DATA_FILE)
                counts["retired"] += 1
        return counts
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return file_digest(a) == file_digest(b)


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


RETIRED = ".retired-"


def retire(path: Path) -> Path:
    """Take a published file out of its table without breaking readers that have it open.

    The file is renamed to a hidden ``.retired-<unix time>-<name>`` next to it: globbing
    readers stop seeing it at once, a query that already opened it keeps reading it
    (POSIX keeps the inode alive), and ``vacuum`` deletes it after the grace period.
    """
    path = Path(path)
    target = path.with_name(f"{RETIRED}{int(time.time())}-{uuid.uuid4().hex[:8]}-{path.name}")
    os.replace(path, target)
    _fsync_path(path.parent)
    return target


def vacuum(lake: Path, grace_hours: float) -> list[Path]:
    """Delete retired files and leftovers of killed writers older than ``grace_hours``.

    The grace period must exceed the longest query, as with Delta Lake's VACUUM: a
    file younger than it may still be read and is kept.
    """
    cutoff = time.time() - grace_hours * 3600
    removed = []
    for layer in ("bronze", "silver", "gold"):
        base = Path(lake) / layer
        if not base.exists():
            continue
        for path in base.rglob(".*"):
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            if path.name.startswith(RETIRED):
                stamp = int(path.name[len(RETIRED):].split("-", 1)[0])
                if stamp > cutoff:
                    continue
            elif not path.name.endswith(".tmp"):
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    for directory in sorted({p.parent for p in removed}, reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()  # a partition folder left empty by retention
    return removed


def exists(lake: Path, layer: str, table: str, partition: Mapping[str, str] | None = None) -> bool:
    return (partition_dir(lake, layer, table, partition) / DATA_FILE).exists()


def partitions(lake: Path, layer: str, table: str) -> list[dict[str, str]]:
    """Published partitions of a table, sorted, as ``{key: value}`` dicts."""
    root = table_dir(lake, layer, table)
    found = []
    for data in sorted(root.glob(f"**/{DATA_FILE}")):
        parts = data.parent.relative_to(root).parts
        found.append(dict(p.split("=", 1) for p in parts))
    return found


def scan(lake: Path, layer: str, table: str, *, missing_ok: bool = False,
         union_schema: bool = False) -> pl.LazyFrame | None:
    """Lazily scan every published partition of a table (hive columns included).

    Partitions lacking a column read it as null. By default the columns are those of
    the first partition; ``union_schema`` reads every partition's footer and takes the
    union, for tables whose later partitions may add columns (schema evolution).
    """
    root = table_dir(lake, layer, table)
    files = sorted(root.glob(f"**/{DATA_FILE}")) if union_schema else None
    if not (files if union_schema else any(root.glob(f"**/{DATA_FILE}"))):
        if missing_ok:
            return None
        raise StorageError(f"table {layer}.{table} has no published data under {root}")
    schema = None
    if files:
        hive = {part.split("=", 1)[0] for f in files[:1] for part in f.relative_to(root).parts[:-1]}
        schema = {}
        for f in files:
            for name, dtype in pl.read_parquet_schema(f).items():
                if name not in hive:
                    schema.setdefault(name, dtype)
    return pl.scan_parquet(
        str(root / "**" / DATA_FILE), hive_partitioning=True, hidden_file_prefix=".",
        missing_columns="insert", extra_columns="ignore", schema=schema,
    )


def row_count(lake: Path, layer: str, table: str) -> int:
    """Rows in a published table, read from Parquet metadata (no data is scanned)."""
    lf = scan(lake, layer, table, missing_ok=True)
    return 0 if lf is None else lf.select(pl.len()).collect().item()


def content_hash(lake: Path, layer: str, table: str, *, ignore: Iterable[str] = ()) -> str:
    """Order-independent hash of a table's rows, ignoring wall-clock lineage columns.

    Two runs that produce the same rows (in any order, in any file layout) hash equal.
    ``ignore`` drops more columns, e.g. the lineage of which batch delivered a row.
    """
    lf = scan(lake, layer, table, missing_ok=True)
    return "empty" if lf is None else frame_hash(lf, ignore=ignore)


def frame_hash(lf: pl.LazyFrame, *, ignore: Iterable[str] = ()) -> str:
    """``content_hash`` of any frame (e.g. a filtered table)."""
    skip = VOLATILE_COLUMNS | set(ignore)
    cols = sorted(c for c in lf.collect_schema().names() if c not in skip)
    hashes = lf.select(pl.struct(cols).hash(seed=0).alias("h")).sort("h").collect()["h"]
    digest = hashlib.sha256(hashes.to_numpy().tobytes())
    digest.update(",".join(cols).encode())
    return digest.hexdigest()


def tables(lake: Path, layer: str) -> list[str]:
    """Names of the tables (folders) of a layer, sorted."""
    base = Path(lake) / layer
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []


def layer_hashes(lake: Path, *, ignore: Iterable[str] = ()) -> dict[str, str]:
    """``{"layer.table": hash}`` for every table in bronze, silver and gold."""
    return {f"{layer}.{t}": content_hash(lake, layer, t, ignore=ignore)
            for layer in ("bronze", "silver", "gold") for t in tables(lake, layer)}


# --------------------------------------------------------------------------- small state files
@contextlib.contextmanager
def locked(lake: Path, name: str) -> Iterator[None]:
    """Exclusive inter-process lock for read-modify-write of shared state."""
    lock_dir = Path(lake) / "_state" / "_locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{_check_name('lock', name)}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, value: Any) -> None:
    """Atomically replace a small JSON document (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh, indent=1, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
