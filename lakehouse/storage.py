"""The one I/O module: where tables live, how partitions are published, how they are read.

Silver and gold tables are Delta tables (``DELTA_LAYERS``, ADR 0019): ``publish``,
``publish_batches``, ``read``, ``scan``, ``exists``, ``partitions`` and ``drop_partition`` route
to ``lakehouse.delta``, and every change is one Delta commit. Bronze still uses the file
protocol described here, until it moves too.

Layout: ``<lake>/<layer>/<table>/[<key>=<value>/...]data.parquet``. A partition is
exactly one Parquet file, so publishing it is one atomic ``os.replace`` of a fully
written, fsynced temporary file in the same directory (ADR 0001). Readers therefore
see the old partition or the new one, never a partial, mixed or missing one, and no
file of a replaced partition stays visible.

The lake root may also be an object-store URI (``s3://``, ``gs://``, ``abfs://``; ADR 0013).
There is no rename there, and overwriting one key is not enough: readers fetch a Parquet
file in several ranged GETs, and a replacement between two of them mixes versions (the
object-store test caught exactly that). So objects are immutable: each publish uploads a
new ``data-<time_ns>-<random>.parquet`` in one PUT (multipart uploads appear only when
complete), the newest file of a partition is its content, and readers resolve that file
once and keep reading it; superseded files are deleted by ``vacuum`` after the grace
period. Credentials and endpoints come from each cloud's standard environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), read by fsspec and Polars alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import fsspec
import polars as pl
import pyarrow.parquet as pq

DATA_FILE = "data.parquet"
# Layers whose every table is a Delta table (ADR 0019): written through ``publish`` and
# ``publish_batches`` (staged batches, quarantine) or by ``silver.build`` through ``lakehouse.delta``
# (silver's entity tables, ADR 0020). Bronze still publishes one file per partition
DELTA_LAYERS = frozenset({"silver", "gold"})
LAYERS = ("bronze", "silver", "gold", "_state")
# Columns whose value legitimately differs between two identical runs (wall clock, run id).
VOLATILE_COLUMNS = frozenset({"_ingested_at", "_run_id"})
_PART_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

Location = Path | str
"""A place in the lake: a ``Path`` on local disk, a ``scheme://bucket/key`` string elsewhere."""


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


# --------------------------------------------------------------------------- local or object store
def is_remote(where: Location) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``, ``abfs://``, ...), False for a local path."""
    return not isinstance(where, Path) and "://" in where and not where.startswith("file://")


@functools.cache
def _filesystem(protocol: str) -> fsspec.AbstractFileSystem:
    # listings are not cached: a partition published by another process must be seen at once
    return fsspec.filesystem(protocol, use_listings_cache=False)


def filesystem(where: Location) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem of an object-store location (credentials from the environment)."""
    return _filesystem(str(where).split("://", 1)[0])


def join(base: Location, *parts: str) -> Location:
    """``base / part / ...`` for a local path or an object-store URI."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return Path(str(base).removeprefix("file://")).joinpath(*parts)


def _uri(where: Location, key: str) -> str:
    """fsspec returns keys without the scheme; put it back so Polars and DuckDB read the same object."""
    return f"{str(where).split('://', 1)[0]}://{key}"


def path_exists(where: Location) -> bool:
    return filesystem(where).exists(where) if is_remote(where) else Path(where).exists()


def find(where: Location, pattern: str) -> list[Location]:
    """Files under ``where`` matching a glob ``pattern`` (e.g. ``**/data.parquet``), sorted."""
    if is_remote(where):
        return sorted(_uri(where, k) for k in filesystem(where).glob(f"{str(where).rstrip('/')}/{pattern}"))
    return sorted(Path(where).glob(pattern))


def layer_root(lake: Location, layer: str) -> Location:
    """Where a layer lives: ``<lake>/<layer>``, or one bucket per layer.

    A lake root holding ``{layer}`` (``s3://acme-lake-{layer}/``, as the Terraform modules
    provision it: one bucket per layer with its own lifecycle and access rules) names each
    layer's bucket; state then lives in the gold bucket under ``_state/``.
    """
    if layer not in LAYERS:
        raise StorageError(f"unknown layer {layer!r}; expected one of {LAYERS}")
    if "{layer}" not in str(lake):
        return join(lake, layer)
    if layer == "_state":
        return join(str(lake).replace("{layer}", "gold"), "_state")
    root = str(lake).replace("{layer}", layer)
    return root.rstrip("/") if is_remote(root) else Path(root)


def lake_path(lake: Location, *parts: str) -> Location:
    """A path relative to the lake root (model artifacts); in the gold bucket for per-layer lakes."""
    return join(str(lake).replace("{layer}", "gold") if "{layer}" in str(lake) else lake, *parts)


def table_dir(lake: Location, layer: str, table: str) -> Location:
    """Directory of a table; names are validated so config can't escape the lake."""
    return join(layer_root(lake, layer), _check_name("table", table))


def partition_dir(lake: Location, layer: str, table: str,
                  partition: Mapping[str, str] | None = None) -> Location:
    parts = [f"{_check_name('partition key', k)}={_check_part_value(k, str(v))}"
             for k, v in (partition or {}).items()]
    return join(table_dir(lake, layer, table), *parts)


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


def data_files(lake: Location, layer: str, table: str) -> list[Location]:
    """The current data file of every partition of a table, sorted (hidden temp, retired
    and superseded files excluded)."""
    root = table_dir(lake, layer, table)
    if _is_delta(root):
        from lakehouse import delta

        return delta.files(root)
    if is_remote(root):
        if not filesystem(root).exists(root):
            return []
        return sorted(f"{d}/{names[-1]}" for d, names in _objects(str(root)).items())
    return find(root, f"**/{DATA_FILE}")


def _is_delta(root: Location) -> bool:
    """A table committed as a Delta table (ADR 0019) rather than one file per partition."""
    from lakehouse import delta

    return delta.is_table(root)


def table_source(lake: Location, layer: str, table: str, version: int | None = None) -> str:
    """What ``read_parquet`` (DuckDB) should read for a table, as a SQL literal: a snapshot of
    its current files (hard links on disk, see ``_pinned``; the list of current objects on an
    object store). DuckDB, like Polars, opens a file more than once per query, so a glob over
    live partitions tears when a run republishes one; a catalog built from snapshots reads a
    consistent lake until it is rebuilt, and vacuum's grace period outlives that.

    ``version`` (Delta tables only): the files of that earlier version (time travel)."""
    if version is not None:
        from lakehouse import delta

        return _sql_list(delta.files(table_dir(lake, layer, table), version))
    files = data_files(lake, layer, table)
    if is_remote(lake) or _is_delta(table_dir(lake, layer, table)):  # Delta files are immutable
        return _sql_list(files)
    return "'" + _pinned(lake, layer, table, files).replace("'", "''") + "'"


def _sql_list(files: Iterable[Location]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"



def read(lake: Location, layer: str, table: str,
         partition: Mapping[str, str] | None = None) -> pl.DataFrame | None:
    """One partition in memory (a batch-sized file), or None when it was never published."""
    lf = scan_partition(lake, layer, table, partition)
    return None if lf is None else lf.collect()


def scan_partition(lake: Location, layer: str, table: str,
                   partition: Mapping[str, str] | None = None) -> pl.LazyFrame | None:
    """One partition's rows, lazily, without its partition columns (as a ``key=value`` file
    holds them); None when it was never published (or, on Delta, holds no rows)."""
    root = table_dir(lake, layer, table)
    if _is_delta(root):
        from lakehouse import delta

        if not exists(lake, layer, table, partition):
            return None
        values = dict(partition or {})
        # typed as the partition columns were written (``delta.typed``): equality on them prunes
        # the other partitions' files from the log alone
        return delta.scan(root).filter(*[pl.col(k) == pl.lit(delta.typed(v)) for k, v in values.items()] or
                                       [pl.lit(True)]).drop(list(values))
    path = data_file(lake, layer, table, partition)
    return pl.scan_parquet(path) if path_exists(path) else None


def read_batches(path: Location, rows: int) -> Iterator[pl.DataFrame]:
    """One Parquet file as DataFrames of at most ``rows`` rows (at least one, maybe empty),
    so a batch of any size is processed in bounded memory."""
    lf = pl.scan_parquet(path)
    total = file_rows(path)
    for offset in range(0, max(total, 1), rows):
        yield lf.slice(offset, rows).collect()


def file_schema(path: Location) -> pl.Schema:
    """Columns of one Parquet file, read from its footer."""
    return pl.scan_parquet(path).collect_schema()


def file_rows(path: Location) -> int:
    """Rows of one Parquet file, from its footer (pyarrow reads a local footer ~4x faster than
    a Polars scan: the report and drift checks read hundreds a run)."""
    if is_remote(path):
        return pl.scan_parquet(path).select(pl.len()).collect().item()
    return pq.read_metadata(path).num_rows


def partition_rows(lake: Location, layer: str, table: str, keep: Callable[[dict[str, str]], bool] | None = None,
                   ) -> list[tuple[dict[str, str], Location, int]]:
    """(partition values, file, rows) of each current data file of a table whose partition
    values ``keep`` accepts, from metadata only: a Delta table's log (one read, no footer
    opened), else the footers of the kept partitions' files."""
    root = table_dir(lake, layer, table)
    if _is_delta(root):
        from lakehouse import delta

        found = delta.file_rows(root)
        return [f for f in found if keep is None or keep(f[0])]
    found = [(hive_values(lake, layer, table, f), f) for f in data_files(lake, layer, table)]
    return [(values, f, file_rows(f)) for values, f in found if keep is None or keep(values)]


def modified_time(path: Location) -> float:
    """Unix time a file was last written."""
    if is_remote(path):
        return _info_mtime(filesystem(path).info(str(path)))
    return Path(path).stat().st_mtime


def _info_mtime(info: Mapping[str, Any]) -> float:
    """The modification time in an fsspec ``info`` dict (each backend names it its own way)."""
    modified = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
    return modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)


def get_file(path: Location, local: Path) -> Path:
    """A local copy of ``path`` (the path itself when it is local)."""
    if not is_remote(path):
        return Path(path)
    filesystem(path).get_file(str(path), str(local))
    return local


def state_dir(lake: Location) -> Location:
    """Where small state documents live (watermarks, registries, run history): ``<lake>/_state``."""
    return layer_root(lake, "_state")


def state_path(lake: Location, *parts: str) -> Location:
    """A state document or folder under ``state_dir``."""
    return join(state_dir(lake), *parts)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        with _fenced():
            os.replace(tmp, target_dir / DATA_FILE)
        _fsync_path(target_dir)
    finally:
        tmp.unlink(missing_ok=True)


def _install(local: Path, target_dir: Location) -> None:
    """Make a finished local file the content of a partition: ``data.parquet`` on disk, a
    fresh immutable object on an object store."""
    put_file(local, _new_object(str(target_dir)) if is_remote(target_dir) else join(target_dir, DATA_FILE))


def put_file(local: Path, target: Location) -> None:
    """Make a fully written local file the content of ``target`` in one atomic step."""
    if is_remote(target):
        with _fenced():
            filesystem(target).put_file(str(local), str(target))
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(local).st_dev != os.stat(target.parent).st_dev:
        # a rename can't cross file systems: copy next to the target first, then rename
        copy = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(local, copy)
        local = copy
    _fsync_path(local)
    with _fenced():
        os.replace(local, target)
    _fsync_path(target.parent)


def codec(layer: str) -> Literal["zstd", "snappy"]:
    """Parquet compression by layer: bronze and silver are stored (zstd: ~1.5x smaller); gold is
    served, and DuckDB scans snappy ~1.5-2x faster (docs/benchmarks.md, ADR 0015)."""
    return "snappy" if layer == "gold" else "zstd"


def publish(
    frame: pl.LazyFrame | pl.DataFrame,
    lake: Location,
    layer: str,
    table: str,
    partition: Mapping[str, str] | None = None,
) -> Location:
    """Write ``frame`` as the (whole) content of one partition, atomically.

    LazyFrames are streamed with ``sink_parquet`` so memory stays bounded. The
    temporary file is hidden (leading dot, ``.tmp`` suffix) so globbing readers
    never pick it up; leftovers of a killed writer are removed on the next publish.
    """
    if layer in DELTA_LAYERS:
        from lakehouse import delta

        root = table_dir(lake, layer, table)
        if partition:
            delta.replace_where(frame, root, {_check_name("partition key", k): _check_part_value(k, str(v))
                                              for k, v in partition.items()}, partition_by=list(partition))
        else:
            delta.replace_all(frame, root)
        return root
    target_dir = partition_dir(lake, layer, table, partition)
    with _atomic_file(target_dir) as tmp:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(tmp, compression=codec(layer), statistics=True)
        else:
            frame.write_parquet(tmp, compression=codec(layer), statistics=True)
    return data_file(lake, layer, table, partition)


def publish_batches(
    batches: Iterable[pl.DataFrame],
    lake: Location,
    layer: str,
    table: str,
    partition: Mapping[str, str] | None = None,
) -> int:
    """Stream DataFrame batches into one partition file, atomically; returns the row count.

    Later batches are cast to the first batch's schema, so a source that yields
    consistent types (as the extractors do) writes one well-typed file.
    """
    if layer in DELTA_LAYERS:
        # streamed into a private local file first (bounded memory), then one Delta commit that
        # replaces the partition: readers see the old batch or the new one
        with scratch_dir(lake) as tmp:
            rows, wrote = _write_batches(batches, tmp / DATA_FILE, layer)
            if wrote:
                publish(pl.scan_parquet(tmp / DATA_FILE), lake, layer, table, partition)
            elif exists(lake, layer, table, partition):  # no batch at all: the partition is empty now
                drop_partition(lake, layer, table, partition or {})
        return rows
    target_dir = partition_dir(lake, layer, table, partition)
    with _atomic_file(target_dir) as tmp:
        rows, wrote = _write_batches(batches, tmp, layer)
        if not wrote:
            pl.DataFrame().write_parquet(tmp)
    return rows


def _write_batches(batches: Iterable[pl.DataFrame], path: Path, layer: str) -> tuple[int, bool]:
    """Stream ``batches`` into one Parquet file; (rows, whether any batch came)."""
    rows = 0
    writer: pq.ParquetWriter | None = None
    schema: pl.Schema | None = None
    try:
        for batch in batches:
            if writer is None:
                schema = batch.schema
                writer = pq.ParquetWriter(path, batch.to_arrow().schema, compression=codec(layer))
            elif batch.schema != schema:
                batch = batch.select(schema.names()).cast(dict(schema))
            writer.write_table(batch.to_arrow())
            rows += batch.height
    finally:
        if writer is not None:
            writer.close()
    return rows, writer is not None


def drop_partition(lake: Location, layer: str, table: str, partition: Mapping[str, str]) -> None:
    """Take one partition out of a table (retention): on Delta a delete commit (its files stay
    readable by older versions until vacuum), else its file is retired (``retire``)."""
    root = table_dir(lake, layer, table)
    if _is_delta(root):
        from lakehouse import delta

        delta.delete_where(root, partition)
    else:
        retire(data_file(lake, layer, table, partition))


def publish_table(frame: pl.LazyFrame | pl.DataFrame, lake: Location, layer: str, table: str, *,
                  rewrite_unchanged: bool = False) -> bool:
    """Publish ``frame`` as a whole unpartitioned table, atomically; on a Delta layer a table
    already holding exactly these rows gets no new version (``delta.replace_all_if_changed``)
    unless ``rewrite_unchanged``. Returns whether it wrote."""
    if layer in DELTA_LAYERS and not rewrite_unchanged:
        from lakehouse import delta

        return delta.replace_all_if_changed(frame, table_dir(lake, layer, table))
    publish(frame, lake, layer, table)
    return True


def publish_partitioned(frame: pl.LazyFrame | Sequence[pl.LazyFrame], lake: Location, layer: str, table: str,
                        by: str, sort_by: list[str] | None = None,
                        only: Sequence[object] | None = None) -> dict[str, int]:
    """Publish ``frame`` as the whole Delta table, one partition per value of ``by``, committing
    only what changed (``delta.replace_changed_partitions``: one atomic commit, none on a rerun).

    The frame is computed once, streamed into a local staging area split by ``by`` (so the
    model's query runs once although comparing and writing both read it), and ``sort_by``
    orders the rows of each partition there, one partition in memory at a time (a whole-table
    ORDER BY held TPC-H's facts in memory, ADR 0017). Returns counts of ``written``,
    ``unchanged`` and ``retired`` partitions. With ``only``, ``frame`` holds just those
    partitions and no other is read or touched (``delta.replace_changed_partitions``).
    A list of frames holding disjoint partitions (a full build in chunks) is computed one
    frame after the other, and committed together.
    """
    from lakehouse import delta

    _check_name("partition key", by)
    if layer not in DELTA_LAYERS:
        raise StorageError(f"{layer}.{table}: whole-table partitioned publishes are for Delta layers "
                           f"{sorted(DELTA_LAYERS)}")
    frames = [frame] if isinstance(frame, pl.LazyFrame) else list(frame)
    staging = _scratch(lake)
    try:
        for i, part in enumerate(frames):
            part.sink_parquet(pl.PartitionBy(staging / f"{i:05d}", key=by, include_key=True), mkdir=True,
                              compression="lz4")
        # an empty frame writes no partition, and the sink then creates no folder at all
        parts = sorted((d for chunk in staging.iterdir() for d in chunk.iterdir() if d.is_dir()),
                       key=lambda d: d.name) if staging.exists() else []
        files: list[Path] = []
        for d in parts:
            found = sorted(d.glob("*.parquet"))
            if sort_by:  # one partition in memory at a time
                sorted_file = d / "sorted.parquet"
                pl.read_parquet(found).sort(sort_by).write_parquet(sorted_file, compression="lz4")
                found = [sorted_file]
            files += found
        if not files:
            staged = pl.LazyFrame(schema=frames[0].collect_schema())
        else:
            staged = pl.scan_parquet(files, hive_partitioning=False)
        return delta.replace_changed_partitions(staged, table_dir(lake, layer, table), by, only=only)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _scratch(lake: Location) -> Path:
    """A private local folder for intermediate files (same file system as the lake on disk)."""
    return (Path(tempfile.gettempdir()) / "lakehouse-staging" if is_remote(lake)
            else Path(state_dir(lake)) / "_staging") / uuid.uuid4().hex


@contextlib.contextmanager
def scratch_dir(lake: Location) -> Iterator[Path]:
    """A private local folder for intermediate files, removed on exit."""
    path = _scratch(lake)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def spill_buckets(frame: pl.LazyFrame, lake: Location, key: list[str], buckets: int) -> Iterator[list[pl.LazyFrame]]:
    """Split ``frame`` by a hash of ``key`` into ``buckets`` local files in one streamed pass.

    Yields one LazyFrame per non-empty bucket: every row of a key is in the same bucket, so a
    computation that is local to a key (latest version, SCD2 history) can run bucket by
    bucket in ``1/buckets`` of the memory. The files are removed on exit.
    """
    scratch = _scratch(lake)
    try:
        # Polars' hash only places rows in this call's scratch files, removed on exit: no value
        # outlives the process, so a hash that changes between Polars versions is harmless here
        frame.with_columns(_bucket=pl.struct(key).hash(seed=0) % buckets).sink_parquet(
            pl.PartitionBy(scratch, key="_bucket", include_key=False), mkdir=True, compression="lz4")
        dirs = sorted(scratch.glob("_bucket=*"), key=lambda d: int(d.name.split("=", 1)[1]))
        yield [pl.scan_parquet(sorted(d.glob("*.parquet"))) for d in dirs]  # all of a bucket's files
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def vacuum(lake: Location, grace_hours: float) -> list[Location]:
    """Delete retired files and leftovers of killed writers older than ``grace_hours``.

    The grace period must exceed the longest query, as with Delta Lake's VACUUM: a
    file younger than it may still be read and is kept.
    """
    cutoff = time.time() - grace_hours * 3600
    removed: list[Location] = []
    for layer in ("bronze", "silver", "gold"):
        for path, mtime in _hidden_files(layer_root(lake, layer)):
            name = str(path).rsplit("/", 1)[-1]
            if mtime > cutoff:
                continue
            if name.startswith(RETIRED):
                if int(name[len(RETIRED):].split("-", 1)[0]) > cutoff:
                    continue
            elif not name.endswith(".tmp"):
                continue
            if is_remote(path):
                filesystem(path).rm_file(str(path))
            else:
                Path(path).unlink(missing_ok=True)
            removed.append(path)
        if is_remote(lake):
            removed += _vacuum_superseded(layer_root(lake, layer), cutoff)
    removed += _vacuum_delta(lake, grace_hours)
    snapshots = Path(state_dir(lake)) / SNAPSHOTS if not is_remote(lake) else None
    if snapshots is not None and snapshots.exists():
        for snap in snapshots.iterdir():
            if int(snap.name.split("-", 1)[0]) <= cutoff:
                shutil.rmtree(snap, ignore_errors=True)
    for directory in sorted({p.parent for p in removed if isinstance(p, Path)}, reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()  # a partition folder left empty by retention
    return removed


def delta_tables(lake: Location) -> Iterator[tuple[str, Location]]:
    """``("layer.table", root)`` of every Delta table of the lake."""
    for layer in ("bronze", "silver", "gold"):
        for table in tables(lake, layer):
            root = table_dir(lake, layer, table)
            if _is_delta(root):
                yield f"{layer}.{table}", root


def _vacuum_delta(lake: Location, grace_hours: float) -> list[Location]:
    """Delta vacuum of every Delta table: files no version of the last ``grace_hours`` needs."""
    from lakehouse import delta

    return [f for _, root in delta_tables(lake) for f in delta.vacuum(root, grace_hours)]


def empty_frame(lake: Location, layer: str, table: str) -> pl.DataFrame | None:
    """The (rowless) columns of a Delta table that has no data file, else None."""
    root = table_dir(lake, layer, table)
    if not _is_delta(root):
        return None
    from lakehouse import delta

    return pl.DataFrame(schema=delta.scan(root).collect_schema())


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


def _hidden_files(base: Location) -> Iterator[tuple[Location, float]]:
    """(path, modification time) of every hidden file under ``base``."""
    if is_remote(base):
        fs = filesystem(base)
        if not fs.exists(base):
            return
        for key, info in fs.find(base, detail=True).items():
            if key.rsplit("/", 1)[-1].startswith("."):
                yield _uri(base, key), _info_mtime(info)
        return
    base = Path(base)
    if base.exists():
        for path in base.rglob(".*"):
            if path.is_file():
                yield path, path.stat().st_mtime


def exists(lake: Location, layer: str, table: str, partition: Mapping[str, str] | None = None) -> bool:
    if _is_delta(table_dir(lake, layer, table)):
        if not partition:  # an unpartitioned table: published once it has a version
            return True
        return {k: str(v) for k, v in partition.items()} in partitions(lake, layer, table)
    return path_exists(data_file(lake, layer, table, partition))


def partitions(lake: Location, layer: str, table: str) -> list[dict[str, str]]:
    """Published partitions of a table, sorted, as ``{key: value}`` dicts."""
    root = table_dir(lake, layer, table)
    if _is_delta(root):
        from lakehouse import delta

        return delta.partitions(root)
    return [hive_values(lake, layer, table, f) for f in data_files(lake, layer, table)]


def hive_values(lake: Location, layer: str, table: str, file: Location) -> dict[str, str]:
    """``{key: value}`` of the ``key=value`` folders between a table's root and one of its files."""
    root = str(table_dir(lake, layer, table)).rstrip("/")
    return dict(p.split("=", 1) for p in str(file)[len(root) + 1:].split("/")[:-1])


def scan(lake: Location, layer: str, table: str, *, missing_ok: bool = False,
         union_schema: bool = False) -> pl.LazyFrame | None:
    """Lazily scan every published partition of a table (hive columns included).

    Partitions lacking a column read it as null. By default the columns are those of
    the first partition; ``union_schema`` reads every partition's footer and takes the
    union, for tables whose later partitions may add columns (schema evolution).
    """
    if _is_delta(table_dir(lake, layer, table)):
        from lakehouse import delta

        return delta.scan(table_dir(lake, layer, table))
    files = data_files(lake, layer, table)
    if not files:
        if missing_ok:
            return None
        raise StorageError(f"table {layer}.{table} has no published data under {table_dir(lake, layer, table)}")
    schema = None
    if union_schema:
        hive = set(hive_values(lake, layer, table, files[0]))
        schema = {}
        for f in files:
            for name, dtype in file_schema(f).items():
                if name not in hive:
                    schema.setdefault(name, dtype)
    source = files if is_remote(lake) else _pinned(lake, layer, table, files)
    return pl.scan_parquet(
        source, hive_partitioning=True, hidden_file_prefix=".",
        missing_columns="insert", extra_columns="ignore", schema=schema,
    )


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


def row_count(lake: Location, layer: str, table: str) -> int:
    """Rows in a published table, read from Delta's log or Parquet metadata (no data is scanned)."""
    if _is_delta(table_dir(lake, layer, table)):
        from lakehouse import delta

        return delta.row_count(table_dir(lake, layer, table))
    lf = scan(lake, layer, table, missing_ok=True)
    return 0 if lf is None else lf.select(pl.len()).collect().item()


def content_hash(lake: Location, layer: str, table: str, *, ignore: Iterable[str] = ()) -> str:
    """Order-independent hash of a table's rows, ignoring wall-clock lineage columns.

    Two runs that produce the same rows (in any order, in any file layout) hash equal.
    ``ignore`` drops more columns, e.g. the lineage of which batch delivered a row.
    """
    lf = scan(lake, layer, table, missing_ok=True)
    return "empty" if lf is None else frame_hash(lf, ignore=ignore)


def frame_hash(lf: pl.LazyFrame, *, ignore: Iterable[str] = ()) -> str:
    """``content_hash`` of any frame (e.g. a filtered table).

    For comparing lakes built by one installation (tests, rebuild checks): Polars' row hash is
    not specified across versions, so a digest is never stored or compared with another
    version's."""
    skip = VOLATILE_COLUMNS | set(ignore)
    cols = sorted(c for c in lf.collect_schema().names() if c not in skip)
    hashes = lf.select(pl.struct(cols).hash(seed=0).alias("h")).sort("h").collect()["h"]
    digest = hashlib.sha256(hashes.to_numpy().tobytes())
    digest.update(",".join(cols).encode())
    return digest.hexdigest()


def tables(lake: Location, layer: str) -> list[str]:
    """Names of the tables (folders) of a layer, sorted; ``_state`` and ``_models`` are not tables."""
    base = layer_root(lake, layer)
    if is_remote(base):
        fs = filesystem(base)
        if not fs.exists(base):
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(base, detail=True)
                 if e["type"] == "directory"]
    else:
        base = Path(base)
        names = [p.name for p in base.iterdir() if p.is_dir()] if base.exists() else []
    return sorted(n for n in names if not n.startswith("_"))


def layer_hashes(lake: Location, *, ignore: Iterable[str] = ()) -> dict[str, str]:
    """``{"layer.table": hash}`` for every table in bronze, silver and gold."""
    return {f"{layer}.{t}": content_hash(lake, layer, t, ignore=ignore)
            for layer in ("bronze", "silver", "gold") for t in tables(lake, layer)}


# --------------------------------------------------------------------------- small state files
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


def remove(path: Location) -> None:
    """Delete one file (a state document); one already gone is fine."""
    if is_remote(path):
        with contextlib.suppress(FileNotFoundError):
            filesystem(path).rm_file(str(path))
        return
    Path(path).unlink(missing_ok=True)


def read_json(path: Location, default: Any) -> Any:
    try:
        if is_remote(path):
            return json.loads(filesystem(path).cat_file(str(path)))
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def write_json(path: Location, value: Any) -> None:
    """Atomically replace a small JSON document (temp file, fsync, rename; one PUT remotely).

    Fenced like every publish: a superseded task attempt can't move a watermark either."""
    with _fenced():
        _write_json(path, value)


def _write_json(path: Location, value: Any) -> None:
    text = json.dumps(value, indent=1, sort_keys=True, default=str)
    if is_remote(path):
        filesystem(path).pipe_file(str(path), text.encode())
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- attempt fencing
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
        current = read_json(path, {})
        if current.get("generation") == generation and current.get("try_number", 0) > try_number:
            raise StaleAttempt(f"{scope}: try {try_number} started after try {current['try_number']}; "
                               "not running a superseded attempt")
        _write_json(path, {"scope": scope, "try_number": try_number, "generation": generation,
                           "token": token, "pid": os.getpid(), "claimed_at": time.time()})
    _fence = (lake, scope, token)
    return token


def release_attempt() -> None:
    """Forget this process's claim (a process that runs several tasks, as ``dags test`` does)."""
    global _fence
    _fence = None


@contextlib.contextmanager
def _fenced() -> Iterator[None]:
    """Around a publish's final step: hold the scope's lock and check the claim is still ours."""
    if _fence is None:
        yield
        return
    lake, scope, token = _fence
    with locked(lake, _attempt_lock(scope)):
        current = read_json(_attempt_file(lake, scope), {})
        if current.get("token") != token:
            raise StaleAttempt(
                f"{scope}: this attempt was superseded by try {current.get('try_number')} (pid "
                f"{current.get('pid')}); nothing more is published by it (was it frozen or cut off?)")
        yield
