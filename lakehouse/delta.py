"""Delta tables (delta-rs): the table format the lake moves onto, one table family at a time.

A Delta table is a folder of immutable Parquet files plus ``_delta_log/``, whose numbered
commits say which files make up each version. A write adds files and commits once, so a
change touching many partitions is atomic; readers resolve one version's file list and
keep reading those files (nothing is renamed or overwritten in place), so the hard-linked
read snapshots, retire-then-vacuum and newest-object naming of the hand-made protocol are
not needed for these tables (ADR 0019). Old versions' files are deleted by ``vacuum`` only
after the retention period, which outlives the catalog's rebuild interval.

Local paths and object stores go through the same calls; on S3 delta-rs commits with
conditional writes (``If-None-Match``), so concurrent writers are detected by the commit
itself. deltalake is imported inside each function: DAG files must not load it at parse
time, and a process forked after its runtime started must not use it (ADR 0019).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.storage import Location, fencing, is_remote

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)
LOG_DIR = "_delta_log"
CHANGE_FEED = "delta.enableChangeDataFeed"
CHECKPOINT_INTERVAL = "delta.checkpointInterval"
# a reader replays the JSON commits after the newest checkpoint: delta-rs' default of one
# checkpoint per 100 commits made every open of a daily-written table replay up to 99 of them
# (30 ms against 6.5 ms at 95 commits, and Polars' scan 250 ms against 9 ms: docs/FACTS.md)
TARGET_FILE_SIZE = "delta.targetFileSize"
# the size every writer of a table (merge, append, overwrite) cuts its files at. delta-rs'
# default of 100 MB made a merge write the rows it rewrote and the rows it inserted into one
# file: a key-ordered silver table's newest file took each day's new keys, and each day's
# merge of the lookback's keys rewrote that whole file again (retail 2,000 x 12: 523k -> 629k
# rows copied in 5 days, growing by a day's lines every day). At 8 MB the merge rewrites
# the few files around the lookback's keys, whatever the history
FILE_BYTES = 8 << 20
TXN_RETENTION = "delta.setTransactionRetentionDuration"  # see storage.fencing.TXN_RETENTION
TABLE_PROPERTIES = {CHANGE_FEED: "true", CHECKPOINT_INTERVAL: "10", TARGET_FILE_SIZE: str(FILE_BYTES),
                    TXN_RETENTION: fencing.TXN_RETENTION}
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
CHANGE = "_change"  # signed row count of a net change (``changes_since``)
# a whole-table rewrite's change feed holds the table twice: past this size a consumer
# recomputes in full rather than read it (small tables, dimensions, are diffed this way)
FULL_FEED_MAX_ROWS = 1_000_000


def uri(where: Location) -> str:
    return str(where)


def storage_options(where: Location) -> dict[str, str] | None:
    """delta-rs' object-store options from the environment fsspec and Polars also read.

    S3 commits use conditional puts, so no external lock or DynamoDB table is needed (AWS S3
    and MinIO support ``If-None-Match``); GCS and Azure commit atomically by themselves.
    """
    if not is_remote(where):
        return None
    options = {"conditional_put": "etag"} if str(where).startswith(("s3://", "s3a://")) else {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        if os.environ.get(key):
            options[key] = os.environ[key]
    options.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return options


def is_table(where: Location) -> bool:
    """Whether a Delta table has been committed at ``where``."""
    from lakehouse import storage

    return storage.path_exists(storage.join(where, LOG_DIR))


# Tables opened by this thread, brought up to date on each use instead of reopened: a daily run
# opens its tables ~150 times (catalog, maintenance, commits), and an open replays the log
# from its checkpoint (4.2 ms) where catching up with new commits reads only those (0.3 ms)
_opened = threading.local()


def _commit_identity(where: Location, version: int) -> tuple[int, int] | None:
    """(inode, mtime) of one commit's file, None when it is gone."""
    try:
        found = os.stat(os.path.join(uri(where), LOG_DIR, f"{version:020d}.json"))
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns


def _table(where: Location, version: int | None = None):
    """The table at ``where``: the newest version (kept open per thread on local disk and
    updated on each use), or ``version``."""
    from deltalake import DeltaTable

    if version is not None or is_remote(where):
        return DeltaTable(uri(where), version=version, storage_options=storage_options(where))
    # a kept table is known by the file of a commit it has read: a table deleted and created
    # again at the same place (a rebuild) has another file there or none, and must be opened
    # afresh, never caught up from the old log. Not the first commit's file: Delta's expired-log
    # cleanup deletes the oldest entries, and the table must stay kept after it
    cache: dict[str, tuple[int, tuple[int, int], object]] = _opened.__dict__.setdefault("tables", {})
    key = uri(where)
    kept = cache.get(key)
    if kept is not None and _commit_identity(where, kept[0]) == kept[1]:
        table = kept[2]
        # commits are numbered one after another: when the next one's file is absent the table
        # is current (delta-rs' update lists and stats the whole log, 1-3 ms at a few hundred
        # commits, where this is one stat)
        following = os.path.join(key, LOG_DIR, f"{table.version() + 1:020d}.json")  # type: ignore[attr-defined]
        if os.path.exists(following):
            table.update_incremental()  # type: ignore[attr-defined]
    else:
        table = DeltaTable(key)
    newest = table.version()
    if kept is None or kept[2] is not table or kept[0] != newest:
        identity = _commit_identity(where, newest)
        if identity is None:  # not a commit file we can recognise it by: not kept
            cache.pop(key, None)
        else:
            cache[key] = (newest, identity, table)
    return table


def _literal(value: object) -> str:
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, date):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"


def predicate(values: Mapping[str, object]) -> str:
    """A delta-rs SQL predicate matching rows whose columns equal ``values``."""
    return " AND ".join(f"{column} = {_literal(v)}" for column, v in values.items())


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^-?\d{1,18}$")


def typed(value: object) -> object:
    """A partition value given as text, typed as Hive readers infer it (a date, an integer, else
    text), so a column keeps the type it had as a ``key=value`` folder (``forecast_date`` a date)."""
    text = str(value)
    if isinstance(value, date):
        return value
    if _DATE.match(text):
        with contextlib.suppress(ValueError):  # "2026-13-45" is text
            return date.fromisoformat(text)
    # only a canonical integer: "007" stays text, as a warehouse code must
    return int(text) if _INT.match(text) and str(int(text)) == text else text


def replace_where(frame: pl.DataFrame | pl.LazyFrame, where: Location, values: Mapping[str, object], *,
                  partition_by: list[str]) -> int:
    """Make ``frame`` the rows of the table whose ``values`` columns match (a partition), in one
    commit; ``values`` are added to the rows as columns (typed by ``typed``).

    Creates the table on its first write. Rows of other partitions are untouched. Returns the version.
    """
    import polars as pl

    lf = frame.lazy().with_columns(pl.lit(typed(v)).alias(k) for k, v in values.items())
    return _commit(lf, where, partition_by=partition_by,
                   predicate=predicate({k: typed(v) for k, v in values.items()}))


def replace_partitions(frame: pl.DataFrame | pl.LazyFrame, where: Location,
                       partitions: Sequence[Mapping[str, object]], *, partition_by: list[str]) -> int:
    """Make ``frame`` (which carries the partition columns) the rows of every partition in
    ``partitions``, in one commit: ``replace_where`` for many partitions at once, so writing N
    of them costs one commit, not N (each commit lists the table's whole log on local disk:
    docs/benchmarks.md). Returns the version."""
    if not partitions:
        raise ValueError(f"{where}: no partition to replace")
    first, *rest = partition_by
    by_first: dict[object, list[str]] = {}
    for part in partitions:
        others = " AND ".join(f"{k} = {_literal(typed(part[k]))}" for k in rest)
        by_first.setdefault(typed(part[first]), []).append(f"({others})" if others else "true")
    # grouped by the first column: (a = x AND ((b = 1) OR (b = 2))) OR ..., a few terms per value
    where_sql = " OR ".join(f"({first} = {_literal(value)} AND ({' OR '.join(terms)}))"
                            for value, terms in by_first.items())
    return _commit(frame.lazy(), where, partition_by=partition_by, predicate=where_sql)


@contextlib.contextmanager
def _attempt_commit(where: Location, table) -> Iterator[dict]:
    """Around one commit on ``table`` (the snapshot it is based on; None: it creates the table):
    a superseded task attempt commits nothing (ADR 0016). Yields the commit's keyword arguments
    (the attempt's application transaction, ``fencing.delta_commit_properties``); a commit that
    lost a race to a newer attempt of the same task instance raises ``StaleAttempt``."""
    with fencing.fenced():
        commit = fencing.delta_commit_properties(table)
        try:
            yield commit
        except Exception as exc:
            if commit and "concurrent transaction" in str(exc).lower():
                fencing.refused_by_newer(_table(where))
            raise


def delete_where(where: Location, values: Mapping[str, object]) -> int:
    """Delete the rows whose ``values`` columns match (a partition), in one commit; returns the
    version. Their files stay readable by earlier versions until ``vacuum``. Fenced (ADR 0016)."""
    table = _table(where)
    with _attempt_commit(where, table) as commit:
        table.delete(predicate({k: typed(v) for k, v in values.items()}), **commit)
    return _table(where).version()


def replace_all(frame: pl.DataFrame | pl.LazyFrame, where: Location, *,
                target_file_size: int | None = None) -> int:
    """Make ``frame`` the whole content of an unpartitioned table, in one commit.

    ``target_file_size`` (bytes) splits the rows, in the frame's order, into files of about
    that size: a frame sorted by key then gives files of disjoint key ranges, which a merge
    prunes by their statistics (``replace_keys`` rewrites only the files its keys fall in)."""
    return _commit(frame.lazy(), where, partition_by=[], predicate=None, target_file_size=target_file_size)


def replace_all_if_changed(frame: pl.DataFrame | pl.LazyFrame, where: Location, *,
                           max_rows: int = FULL_FEED_MAX_ROWS) -> bool:
    """``replace_all``, but no commit when the table already holds exactly these rows (a
    dimension recomputed by a run that changed nothing in it): its version stays, so its
    consumers see no change and a rerun commits nothing. Tables over ``max_rows`` are
    written without the comparison (it reads the whole table). Returns whether it committed.
    """
    import polars as pl

    lf = frame.lazy()
    if is_table(where) and _rows(_table(where)) <= max_rows:
        current = scan(where)
        stored, new = current.collect_schema(), lf.collect_schema()
        if set(stored.names()) == set(new.names()):
            # the stored types (Delta has no unsigned integers): a value hashes by its type
            lf = lf.cast({c: stored[c] for c in new.names() if new[c] != stored[c]})
            data = lf.collect()
            columns = sorted(data.columns)

            def digest(rows: pl.LazyFrame) -> tuple[int, int]:  # hashed in one process, never stored
                return rows.select(pl.len(), pl.struct(columns).hash(seed=0).sum()).collect().row(0)

            if digest(data.lazy()) == digest(current):
                return False
            lf = data.lazy()
    replace_all(lf, where)
    return True


def replace_changed_partitions(frame: pl.LazyFrame, where: Location, by: str,
                               sort_by: list[str] | None = None,
                               only: Sequence[object] | None = None) -> dict[str, int]:
    """Make ``frame`` the whole table, partitioned by ``by``, committing only what changed.

    With ``only`` (partition values, no null), ``frame`` is the new content of those
    partitions alone: the others are neither read nor touched (an incremental build).

    Each partition's content is summarised (row count and an order-independent hash of its
    rows) for the new frame and the current version; partitions that differ are rewritten
    and partitions the frame no longer has are removed, all in one commit, so a reader sees
    the old table or the new one. Nothing changed: no commit (a rerun writes nothing).
    Returns counts of ``written``, ``unchanged`` and ``retired`` partitions.
    """
    import polars as pl

    columns = [c for c in frame.collect_schema().names() if c != by]
    if only is not None:
        frame = frame.filter(pl.col(by).is_in(list(only)))

    def digest(lf: pl.LazyFrame) -> dict[object, tuple[int, int]]:
        # both sides are hashed here, in one process: Polars' hash is not stable across versions,
        # so a digest is never stored or compared with one from another run
        rows = lf.group_by(by).agg(pl.len(), pl.struct(sorted(columns)).hash(seed=0).sum()).collect().rows()
        return {key: (n, h) for key, n, h in rows}

    exists = is_table(where)
    current = scan(where).collect_schema() if exists else None
    same_schema = current is not None and set(current.names()) == {by, *columns}
    if same_schema:
        # the types the table stores: Delta has no unsigned integers (a ``pl.len()`` column is
        # stored as a signed one), and a value hashes by its type, so without this every
        # partition of such a table differed from itself and was rewritten on every run
        stored = frame.collect_schema()
        frame = frame.cast({c: current[c] for c in columns if stored[c] != current[c]})
    if only is not None and not same_schema:  # the other partitions would be lost or mixed
        raise ValueError(f"{where}: a partial rewrite needs the table's schema; rebuild it in full")
    new = digest(frame)
    current_rows = scan(where) if only is None else scan(where).filter(pl.col(by).is_in(list(only)))
    old = digest(current_rows) if same_schema else {}
    changed = [k for k, d in new.items() if old.get(k) != d]
    retired = [k for k in old if k not in new]
    counts = {"written": len(changed), "unchanged": len(new) - len(changed), "retired": len(retired)}
    if exists and same_schema and not changed and not retired:
        return counts
    data = frame.filter(pl.col(by).is_in(changed)) if same_schema else frame
    if sort_by:
        data = data.sort([by, *sort_by])
    where_sql = None
    if same_schema:
        keys = [k for k in changed + retired if k is not None]
        where_sql = f"{by} IN ({', '.join(map(_literal, keys))})" if keys else "false"
        if any(k is None for k in changed + retired):
            where_sql = f"({where_sql} OR {by} IS NULL)"
    _commit(data, where, partition_by=[by], predicate=where_sql)
    return counts


def replace_keys(rows: pl.DataFrame, where: Location, key: list[str], keys: pl.DataFrame) -> dict:
    """Make ``rows`` the table's rows for the keys in ``keys``, in one commit (a merge).

    Every current row whose ``key`` is in ``keys`` is deleted and ``rows`` are inserted, so a
    key's set of rows (its SCD2 versions, say) is replaced whole; other keys are untouched.
    The source is ``keys`` as marker columns (``_mk_<col>``, matched to delete) stacked on
    ``rows`` (markers null, inserted): delta-rs' merge then does both in a single commit.
    ``streamed_exec=False`` lets it prune target files by the source's key range instead of
    scanning the whole table (docs/FACTS: 0.11 s against 1.2-2.1 s for a 10k-row day on 6 M
    rows). When the table holds none of ``keys`` (new keys only) the rows are appended, no
    target file read; otherwise only the keys it holds are merged. Fenced (ADR 0016).
    Returns delta-rs' merge metrics (the same counts for an append).
    """
    import polars as pl

    keys = _present(where, key, keys)
    if keys.height == 0:
        # no key is in the table yet: deleting nothing and inserting ``rows`` is an append, which
        # reads no target file. A merge whose new keys span the key range (a TPC-H day's new
        # orders do) prunes nothing and held all 6 M lineitem rows in memory: 3 GB for 2.5k rows
        if rows.height:
            table = _table(where)
            with _attempt_commit(where, table) as commit:
                rows.select(scan(where).collect_schema().names()).write_delta(
                    table, mode="append", delta_write_options=commit)
        return {"num_target_rows_deleted": 0, "num_target_rows_inserted": rows.height,
                "num_target_files_scanned": 0,
                "num_target_files_skipped_during_scan": len(_table(where).file_uris())}
    # only the keys the table holds are deleted: a narrower key range for the merge to prune by
    markers = keys.select(pl.col(k).alias(f"_mk_{k}") for k in key).unique()
    source = pl.concat([markers, rows], how="diagonal_relaxed")
    table = _table(where)
    with _attempt_commit(where, table) as commit:
        return (table
                .merge(source.to_arrow(), predicate=" AND ".join(f"t.{k} = s._mk_{k}" for k in key),
                       source_alias="s", target_alias="t", streamed_exec=False, **commit)
                .when_matched_delete()
                .when_not_matched_insert(updates={c: f"s.{c}" for c in rows.columns},
                                         predicate=f"s._mk_{key[0]} IS NULL")
                .execute())


# Up to this many distinct keys, a scan is also given the keys as a literal list, which Polars
# checks against each file's statistics: it skips the files inside the keys' range that hold none
# of them (a day's corrections spread over a year). Beyond it, checking the list costs more than
# reading the range: a month's 5.4 M order-line keys against 175 staged files took 34.7 s with the
# list (3.8 s of it building the literal) and 1.9 s by range and hash semi-join, and grew with
# every month of history (seed scale, docs/benchmarks.md, stop 40)
KEY_LIST_MAX = 100_000


def key_filter(column: str, values: pl.Series, distinct: pl.Series) -> pl.Expr:
    """Rows whose ``column`` is in the range of ``values``, and for up to ``KEY_LIST_MAX``
    distinct values one of them: said so that a scan skips what it can (the range and a
    literal list, both of which Polars' Delta scan checks against each file's statistics in
    the log). An imploded Series (``is_in(values.implode())``) is not checked so, and read
    every file: 0.24-0.35 s against 0.09-0.12 s for a day's 89k order lines in a year of
    silver, 0.35-0.44 s against 0.01-0.03 s for 1k keys in 365 batches. Above the cap the
    filter is the range alone: the caller matches exactly (``with_keys`` joins).
    ``distinct`` is ``values``' distinct non-null values, computed once by the caller (a
    hash pass over a month's keys costs about 1 s)."""
    import polars as pl

    if distinct.is_empty():
        return pl.col(column).is_in(values.to_list())  # none, or only nulls: nothing to range over
    in_range = pl.col(column).is_between(pl.lit(distinct.min(), values.dtype), pl.lit(distinct.max(), values.dtype))
    if distinct.len() > KEY_LIST_MAX:
        return in_range
    return in_range & pl.col(column).is_in(distinct.to_list())


def with_keys(frame: pl.LazyFrame, key: list[str], keys: pl.DataFrame) -> pl.LazyFrame:
    """The rows of ``frame`` whose ``key`` columns are one of ``keys``' rows (a null matches a
    null), pruned by the first key column (``key_filter``) so a scan skips what it can."""
    import polars as pl

    first = keys.get_column(key[0])
    distinct = first.drop_nulls().unique()
    pruned = key_filter(key[0], first, distinct)
    if first.has_nulls():
        pruned = pruned | pl.col(key[0]).is_null()
    frame = frame.filter(pruned)
    if len(key) > 1 or distinct.len() > KEY_LIST_MAX:  # then matched exactly
        frame = frame.join(keys.lazy().select(key), on=key, how="semi", nulls_equal=True)
    return frame


def _present(where: Location, key: list[str], keys: pl.DataFrame) -> pl.DataFrame:
    """The distinct ``keys`` the table holds, read from its key columns alone (files whose
    statistics rule the keys out are skipped); silver has one writer per table, so none can
    be added between this read and the caller's commit."""
    return with_keys(scan(where).select(key), key, keys).unique().collect(engine="streaming")


def _commit(lf: pl.LazyFrame, where: Location, *, partition_by: list[str], predicate: str | None,
            target_file_size: int | None = None) -> int:
    """One Delta commit of ``lf``: created on the first write; else rows matching ``predicate``
    replaced (all rows, and the schema, when there is none). Fenced (ADR 0016).

    Writers of different partitions of one table run at once (silver tasks of a run share the
    quarantine and the quality checks, backfill runs share the staged batches), so several may
    find no table and create it together. delta-rs then refuses some of those commits
    ("Protocol changed since last commit") and lets another land as a second metadata change,
    which fails a concurrent writer of another partition ("Metadata changed"; 1-2 of 40
    commits of 4 racing writers, measured). So a table is created under a lock (the only
    lock Delta writes need here), and a writer that finds it created meanwhile writes into it.
    """
    if not is_table(where):
        from lakehouse import storage

        lake, layer, table = str(where).rstrip("/").rsplit("/", 2)
        with storage.locked(lake if storage.is_remote(where) else Path(lake), f"create_{layer}_{table}"):
            if not is_table(where):
                _write(lf, where, creating=True, partition_by=partition_by, predicate=predicate,
                       target_file_size=target_file_size)
                return _table(where).version()
    _write(lf, where, creating=False, partition_by=partition_by, predicate=predicate,
           target_file_size=target_file_size)
    return _table(where).version()


def _write(lf: pl.LazyFrame, where: Location, *, creating: bool, partition_by: list[str], predicate: str | None,
           target_file_size: int | None) -> None:
    options: dict[str, object] = {} if target_file_size is None else {"target_file_size": target_file_size}
    if creating:
        mode = "append"
        # every table keeps a change feed, so a consumer can read what changed since the
        # version it last consumed (``changes_since``) instead of the whole table
        options["configuration"] = dict(TABLE_PROPERTIES)
        if partition_by:
            options["partition_by"] = partition_by
    elif predicate is None:
        mode, options["schema_mode"] = "overwrite", "overwrite"
    else:
        mode, options["predicate"] = "overwrite", predicate
        if set(lf.collect_schema().names()) - set(scan(where).collect_schema().names()):
            # a staged batch with a column the source added (schema drift ``evolve``): the table
            # takes the column, earlier partitions read it as null. Only then: a merge commits
            # the table's metadata again, which concurrent writers of other partitions (silver
            # tasks recording quality checks) refuse as a conflict; a missing column is written
            # as null without it
            options["schema_mode"] = "merge"
    from deltalake import write_deltalake

    # the frame's batches streamed in order, not Polars' ``sink_delta``: its parallel sink writes
    # files out of the frame's order (a key-sorted table needs them in order) and held twice the
    # memory (13 M staged order lines: 4.2 GB peak against 2.1-2.4 GB, the same 8 s)
    # an existing local table is written through the one this thread keeps open, brought up to
    # date: given a path, delta-rs opens the table and replays its log first
    # (a claimed attempt writes through the table it checked its fence on: the same snapshot)
    table = None if creating or (is_remote(where) and fencing.claimed() is None) else _table(where)
    with _attempt_commit(where, table) as commit:
        write_deltalake(uri(where) if table is None else table, _ordered_batches(lf), mode=mode,
                        storage_options=storage_options(where), **options, **commit)  # type: ignore[arg-type]


def _ordered_batches(lf: pl.LazyFrame):
    """``lf``'s rows as an Arrow stream in the frame's order, computed batch by batch."""
    import polars as pl
    import pyarrow as pa

    schema = pl.DataFrame(schema=lf.collect_schema()).to_arrow().schema

    def batches():
        for frame in lf.collect_batches(chunk_size=100_000):
            yield from frame.to_arrow().cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def scan(where: Location, version: int | None = None) -> pl.LazyFrame:
    """A lazy scan of one version of a table (the newest by default), partition columns included.

    The newest version of a local table is read through the table this thread keeps open
    (``_table``): given a path, Polars opens the table and replays its log at every collect
    and schema lookup (about 130 a tiny daily run, 4-5 ms each). The scan reads the version
    current when the table was last brought up to date: at the latest, this call.
    """
    import polars as pl

    if version is None and not is_remote(where) and is_table(where):  # else lazy: fails if collected
        return pl.scan_delta(_table(where))
    return pl.scan_delta(uri(where), version=version, storage_options=storage_options(where))


def row_count(where: Location) -> int:
    """Rows in the newest version, from the log's per-file record counts (no data file read;
    a file written without statistics has none, and then the rows are counted)."""
    return _rows(_table(where))


def version(where: Location) -> int:
    """The newest version, from the log's listing: the highest ``NNN.json`` commit file.

    Opening the table replays its log; a consumer that only asks "did this change since the
    version I read?" (every gold table, every run) needs the number alone. A commit file
    is written once, atomically (put-if-absent), and log cleanup never removes the newest.
    """
    from lakehouse import storage

    log_dir = storage.join(where, LOG_DIR)
    if is_remote(where):
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in storage.filesystem(log_dir).ls(str(log_dir), detail=False)]
    else:
        names = os.listdir(log_dir)
    found = [int(m.group(1)) for n in names if (m := _COMMIT_FILE.match(n))]
    if not found:
        raise FileNotFoundError(f"{where}: no Delta commit in {LOG_DIR}/")
    return max(found)


def set_properties(where: Location, table=None) -> bool:
    """Give a table created before a property was introduced ``TABLE_PROPERTIES`` (one metadata
    commit); returns whether it changed anything. ``table``: the table already opened."""
    table = table if table is not None else _table(where)
    missing = {k: v for k, v in TABLE_PROPERTIES.items() if table.metadata().configuration.get(k) != v}
    if missing:
        table.alter.set_table_properties(missing)
    return bool(missing)


def changes_since(where: Location, version: int | None) -> pl.LazyFrame | None:
    """What changed after ``version``, up to the newest version: the net change, from Delta's
    change feed.

    One row per distinct row that was added or removed, with the table's columns and
    ``CHANGE`` (how many copies were added, negative: removed): an update is its old row
    (-1) and its new one (+1), so a consumer sees where a row was and where it is now. A
    row deleted and written back unchanged (a whole-table rewrite, a merge replacing a
    key's rows) cancels out. Empty when nothing changed. ``None`` when the changes cannot
    be known and the consumer must recompute in full: no version consumed yet, the table
    lacks a change feed, its schema changed since, vacuum removed that range's files, or a
    rewrite of a large table in the range would make the feed as big as the table.
    """
    import polars as pl

    if version is None or not is_table(where):
        return None
    table = _table(where)
    newest = table.version()
    if version > newest or table.metadata().configuration.get(CHANGE_FEED) != "true":
        return None
    schema = scan(where).collect_schema()
    nothing = pl.LazyFrame(schema={**schema, CHANGE: pl.Int64})
    if version == newest:
        return nothing
    try:
        if scan(where, version).collect_schema() != schema:
            return None
        if _rewrote_whole_table(table, version, newest) and _rows(table) > FULL_FEED_MAX_ROWS:
            return None
        files = _spill_feed(table.load_cdf(starting_version=version + 1, ending_version=newest), schema)
    except Exception as exc:  # a vacuumed or unreadable range: the consumer recomputes in full
        log.warning("%s: no change feed since version %d (%s); recomputing in full", where, version, exc)
        return None
    if not files:
        return nothing
    # netted by the rows' hashes: a group-by of every column held each changed row's whole
    # content in memory (a month of seed-scale order lines: 5.4 M rows, 4.2 GB; twice that
    # after a rerun). Here only the hashes are grouped, and the consumer reads the columns
    # it selects from the spilled files
    feed = pl.scan_parquet(files)
    nets = (feed.group_by(_ROW_HASHES).agg(pl.col(CHANGE).sum().cast(pl.Int64))
            .filter(pl.col(CHANGE) != 0).collect())
    return (feed.drop(CHANGE).unique(subset=_ROW_HASHES, keep="any")
            .join(nets.lazy(), on=_ROW_HASHES).drop(_ROW_HASHES))


# two independent 64-bit hashes of a row's content, computed in this process only (Polars' hash
# is not stable across versions): distinct changed rows sharing both are never expected
_ROW_HASHES = ["_row_h0", "_row_h1"]
FEED_SPILL_ROWS = 500_000  # rows per spilled file of a change feed
_spilled: list[Path] = []


def _spill_feed(stream, schema) -> list[str]:
    """A change feed's rows (delta-rs' Arrow stream), as the table's columns, ``CHANGE`` (+1 or
    -1) and the row's hashes, written in files of ``FEED_SPILL_ROWS`` to a temporary folder
    (``release_change_feeds`` removes it); the files' paths."""
    import tempfile

    import polars as pl
    import pyarrow as pa

    columns = list(schema.names())
    sign = pl.when(pl.col("_change_type").is_in(["insert", "update_postimage"])).then(1).otherwise(-1)
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-change-feed-"))
    _spilled.append(folder)
    written: list[str] = []
    pending: list[pl.DataFrame] = []

    def flush() -> None:
        if pending:
            path = folder / f"{len(written):06d}.parquet"
            pl.concat(pending).write_parquet(path, compression="lz4")
            written.append(str(path))
            pending.clear()

    # delta-rs returns an arro3 stream; pyarrow reads it through the Arrow C interface
    for batch in pa.RecordBatchReader.from_stream(stream):
        rows = pl.DataFrame(pa.Table.from_batches([batch])).select(*columns, sign.alias(CHANGE)).cast(dict(schema))
        pending.append(rows.with_columns(pl.struct(columns).hash(seed=i).alias(h)
                                         for i, h in enumerate(_ROW_HASHES)))
        if sum(map(len, pending)) >= FEED_SPILL_ROWS:  # a few frames: cheap to add up
            flush()
    flush()
    return written


def release_change_feeds() -> None:
    """Remove the files of every change feed this process read (``changes_since``): call it once
    the frames built on them are computed (and at exit, for those left)."""
    import shutil

    while _spilled:
        shutil.rmtree(_spilled.pop(), ignore_errors=True)


atexit.register(release_change_feeds)


def net(changes: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """``changes`` (from ``changes_since``) seen through ``columns`` alone: rows whose projection
    did not change cancel out (a new ``valid_to`` on an old version is no change of its key)."""
    import polars as pl

    return (changes.group_by(list(columns)).agg(pl.col(CHANGE).sum().cast(pl.Int64))
            .filter(pl.col(CHANGE) != 0))


def _rewrote_whole_table(table, version: int, newest: int) -> bool:
    # only the commits after ``version`` are read: the whole log grows with every run
    return any(c.get("operation") in ("WRITE", "CREATE OR REPLACE TABLE")
               and (c.get("operationParameters") or {}).get("mode") == "Overwrite"
               and not (c.get("operationParameters") or {}).get("predicate")
               for c in table.history(newest - version) if c.get("version", -1) > version)


def _rows(table) -> int:
    """Rows of an open table's version: the log's record counts, or a count of the rows where
    a file was written without statistics."""
    import polars as pl

    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.is_empty():
        return 0
    if "num_records" in actions.columns and actions["num_records"].null_count() == 0:
        return int(actions["num_records"].sum())
    return pl.scan_delta(table).select(pl.len()).collect().item()


def file_rows(where: Location) -> list[tuple[dict[str, str], str, int]]:
    """(partition values as text, file URI, rows) of every data file of the newest version,
    from the log's add actions (no data file is opened)."""
    import polars as pl

    table = _table(where)
    root = table.table_uri.rstrip("/")
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.height == 0:
        return []
    parts = [c for c in actions.columns if c.startswith("partition.")]
    return [({c.removeprefix("partition."): "" if row[c] is None else str(row[c]) for c in parts},
             f"{root}/{row['path']}", int(row["num_records"] or 0))
            for row in actions.select("path", "num_records", *parts).iter_rows(named=True)]


def files(where: Location, version: int | None = None) -> list[str]:
    """The data files of one version: immutable, so a reader may keep them for as long as
    ``vacuum``'s retention lasts (partition values are in their ``key=value`` folders)."""
    return sorted(_table(where, version).file_uris())


def version_at(where: Location, when: datetime) -> int | None:
    """The version a reader at ``when`` saw: the newest commit at or before it; None when the
    table did not exist yet (delta-rs' own timestamp loading answers version 0 then)."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    cutoff_ms = when.timestamp() * 1000
    seen = [c["version"] for c in _table(where).history() if c["timestamp"] <= cutoff_ms]
    return max(seen, default=None)


def partitions(where: Location) -> list[dict[str, str]]:
    """Partition values of the newest version, sorted."""
    found = {tuple(sorted(p.items())) for p in _table(where).partitions()}
    return [dict(p) for p in sorted(found)]


def vacuum(where: Location, retention_hours: float, *, full: bool = True) -> list[str]:
    """Delete files no version younger than ``retention_hours`` needs; returns those it deleted.

    ``full`` also deletes the files no commit ever named (a writer killed after its first
    8 MB file was flushed, before its commit; the files of a commit that lost a conflict), which
    takes listing every file of the table; without it (delta-rs' lite mode) only the files the
    log removed are looked at, from the log alone.

    delta-rs names again, at every vacuum, the removed files an earlier vacuum already deleted
    (until their tombstones expire), and counts them in its commit's metrics: the candidates
    are asked for first, and only those still there are deleted and returned, so the count the
    retention log shows is the files this run deleted."""
    import math

    from lakehouse.storage.files import backend

    table = _table(where)
    # rounded up: a file younger than the grace period may still be read
    options = {"retention_hours": math.ceil(retention_hours), "enforce_retention_duration": False, "full": full}
    root = str(where).rstrip("/")
    present = [f for f in table.vacuum(dry_run=True, **options)
               if backend(root).exists(f if f.startswith("/") or "://" in f else f"{root}/{f}")]
    if present:
        table.vacuum(dry_run=False, **options)
    return present


def optimize(where: Location, target_size: int | None = None) -> dict:
    """Compact small files into fewer large ones (a new version; the old files go at vacuum).

    delta-rs bins neighbouring files (its ``preserveLocality`` planner), so files laid out by
    key stay key ranges; ``target_size`` (bytes) caps the new files (default: the table's
    ``delta.targetFileSize``, about 100 MB)."""
    table = _table(where)
    with _attempt_commit(where, table) as commit:
        return table.optimize.compact(target_size=target_size, **commit)


def small_files(where: Location, below_bytes: int, table=None) -> int:
    """How many of the newest version's files under ``below_bytes`` compaction could merge:
    those sharing a partition with another small file (it never merges across partitions)."""
    import polars as pl

    table = table if table is not None else _table(where)
    files = pl.DataFrame(table.get_add_actions(flatten=True))
    if files.is_empty():
        return 0
    parts = [c for c in files.columns if c.startswith("partition.")]
    small = files.filter(pl.col("size_bytes") < below_bytes)
    counts = small.group_by(parts).len()["len"] if parts else pl.Series([small.height])
    return int(counts.filter(counts > 1).sum())


def maintain(where: Location, *, below_bytes: int, min_files: int, target_size: int) -> dict | None:
    """The daily upkeep of one table, opened once: ``TABLE_PROPERTIES`` set where missing, and
    a compaction when ``min_files`` small files could merge. Returns the compaction's metrics."""
    table = _table(where)
    set_properties(where, table)
    if small_files(where, below_bytes, table) < min_files:
        return None
    return optimize(where, target_size)


def history(where: Location, limit: int | None = None) -> list[dict]:
    """Commits of the table, newest first (version, timestamp, operation, metrics)."""
    return _table(where).history(limit)
