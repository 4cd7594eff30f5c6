"""Tables by layer, whatever their format: publish, read, scan and list partitions. Silver and
gold route to ``lakehouse.delta`` (every change one Delta commit); bronze uses
``partition_files``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from lakehouse.storage.files import backend, file_rows, file_schema, filesystem, find, path_exists
from lakehouse.storage.partition_files import _atomic_file, _objects, data_file, hive_values, retire
from lakehouse.storage.paths import (
    DATA_FILE,
    Location,
    StorageError,
    _check_name,
    _check_part_value,
    is_remote,
    layer_root,
    partition_dir,
    table_dir,
)
from lakehouse.storage.scratch import _scratch, scratch_dir
from lakehouse.storage.snapshots import _pinned

# Layers whose every table is a Delta table (ADR 0019): written through ``publish`` and
# ``publish_batches`` (staged batches, quarantine) or by ``silver.build`` through ``lakehouse.delta``
# (silver's entity tables, ADR 0020). Bronze still publishes one file per partition
DELTA_LAYERS = frozenset({"silver", "gold"})


def _is_delta(root: Location) -> bool:
    """A table committed as a Delta table (ADR 0019) rather than one file per partition."""
    from lakehouse import delta

    return delta.is_table(root)


def codec(layer: str) -> Literal["zstd", "snappy"]:
    """Parquet compression by layer: bronze and silver are stored (zstd: ~1.5x smaller); gold is
    served, and DuckDB scans snappy ~1.5-2x faster (docs/benchmarks.md, ADR 0015)."""
    return "snappy" if layer == "gold" else "zstd"


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


def empty_frame(lake: Location, layer: str, table: str) -> pl.DataFrame | None:
    """The (rowless) columns of a Delta table that has no data file, else None."""
    root = table_dir(lake, layer, table)
    if not _is_delta(root):
        return None
    from lakehouse import delta

    return pl.DataFrame(schema=delta.scan(root).collect_schema())


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


def row_count(lake: Location, layer: str, table: str) -> int:
    """Rows in a published table, read from Delta's log or Parquet metadata (no data is scanned)."""
    if _is_delta(table_dir(lake, layer, table)):
        from lakehouse import delta

        return delta.row_count(table_dir(lake, layer, table))
    lf = scan(lake, layer, table, missing_ok=True)
    return 0 if lf is None else lf.select(pl.len()).collect().item()


def tables(lake: Location, layer: str) -> list[str]:
    """Names of the tables (folders) of a layer, sorted; ``_state`` and ``_models`` are not tables."""
    names = backend(lake).folders(layer_root(lake, layer))
    return sorted(n for n in names if not n.startswith("_"))


def delta_tables(lake: Location) -> Iterator[tuple[str, Location]]:
    """``("layer.table", root)`` of every Delta table of the lake."""
    for layer in ("bronze", "silver", "gold"):
        for table in tables(lake, layer):
            root = table_dir(lake, layer, table)
            if _is_delta(root):
                yield f"{layer}.{table}", root
