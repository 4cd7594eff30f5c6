"""The DuckDB serving catalog: one file with schemas bronze, silver and gold of views over Parquet.

DuckDB allows one writer or many readers of a file, never both. The pipeline
therefore never opens the published file for writing: it builds a fresh catalog
next to it and swaps it in with one atomic rename (ADR 0003). Analysts who hold
the old file open keep querying it (the views read the current Parquet files),
new connections get the new file, and nobody blocks anybody.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import duckdb

from lakehouse import storage
from lakehouse.config import DomainConfig

LAYERS = ("bronze", "silver", "gold")
log = logging.getLogger(__name__)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_catalog(cfg: DomainConfig, target: Path | None = None, *,
                  versions: Mapping[str, int | None] | None = None) -> Path:
    """Build the catalog into a temporary file, then atomically replace ``catalog_path``.

    ``versions`` pins Delta tables (``"layer.table"``) to an earlier version (time travel,
    ``lakehouse.timetravel``); ``None`` for a table leaves it out (it did not exist then).
    Tables not named are served as they are now."""
    versions = versions or {}
    target = Path(target or cfg.catalog_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    from lakehouse.docs import table_comments

    comments = table_comments(cfg)
    served = {g.name: g.partition_by for g in cfg.gold if g.serve == "table"}
    # the published catalog is the starting point when each of its native tables is current or
    # needs only the partitions whose files changed: they are reloaded, not the whole table. A
    # table to load whole (new, unpartitioned and changed) builds a fresh file instead: DuckDB
    # never shrinks a file, so replacing a large table in a copy would leave its old blocks
    if not versions and target.exists() and _partial_reloads_suffice(cfg, target, served):
        shutil.copyfile(target, tmp)
    try:
        con = duckdb.connect(str(tmp))
        try:
            attach_lake(con, cfg)
            loaded, made_from = _forget_native(con)
            built: dict[str, list[str]] = {}
            views: dict[str, str] = {}  # each lake and reporting view of this catalog: what it is made of
            tables: dict[str, str] = {}  # each native table's fingerprint (a reporting view's input)
            for layer in LAYERS:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
                for table in storage.tables(cfg.lake, layer):
                    name = f"{layer}.{table}"
                    if name in versions:
                        if (pinned := _create_pinned(con, cfg, layer, table, versions[name],
                                                     comments.get(name))) is not None:
                            views[name] = pinned
                    elif layer == "gold" and table in served and (files := storage.data_files(cfg.lake, layer, table)):
                        built[name] = [str(f) for f in files]
                        tables[name] = _made_of(built[name])
                        _drop_view(con, layer, table)
                        _load_table(con, layer, table, built[name], loaded.get(name), served[table],
                                    comments.get(name))
                    elif storage.data_files(cfg.lake, layer, table):
                        source = storage.table_source(cfg.lake, layer, table)
                        views[name] = _made_of(source, comments.get(name))
                        if name in loaded:  # served before, a view now
                            con.execute(f"DROP TABLE {layer}.{_quote_ident(table)}")
                        if made_from.get(name) != views[name]:
                            _create_view(con, layer, table, source, comments.get(name))
                    elif (empty := storage.empty_frame(cfg.lake, layer, table)) is not None:
                        tables[name] = _made_of(str(empty.schema))
                        _drop_view(con, layer, table)
                        _create_empty(con, layer, table, empty)
                    else:
                        continue
                    built.setdefault(name, [])
            _drop_stale_tables(con, built)
            _remember_loaded(con, {k: v for k, v in built.items() if v})
            views.update(_create_reporting_views(con, cfg, comments, {**tables, **views}, made_from))
            _drop_stale_views(con, views)
            _remember_views(con, views)
            created = sorted(k for k, v in views.items() if made_from.get(k) != v)
            log.info("catalog: %d of %d views unchanged and kept, %d created%s", len(views) - len(created),
                     len(views), len(created), f" ({', '.join(created)})" if created else "")
        finally:
            con.close()
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return target


# A raw record re-read by an overlapping (lookback) extraction is quarantined again in
# that batch; analysts see each rejected record once, the log keeps every rejection.
DEDUPED = {"silver.quarantine": ("entity, record_hash", "ingest_date, source_pointer")}


def _create_pinned(con: duckdb.DuckDBPyConnection, cfg: DomainConfig, layer: str, table: str,
                   version: int | None, comment: tuple[str, dict[str, str]] | None) -> str | None:
    """A view over one earlier version of a Delta table (its files are immutable until vacuum);
    its fingerprint, or None when there is no view (no such version, or an empty one)."""
    if version is None:
        return None
    import polars as pl

    from lakehouse import delta

    root = storage.table_dir(cfg.lake, layer, table)
    if delta.files(root, version):
        source = storage.table_source(cfg.lake, layer, table, version)
        _create_view(con, layer, table, source, comment)
        return _made_of(source, comment)
    _create_empty(con, layer, table, pl.DataFrame(schema=delta.scan(root, version).collect_schema()))
    return None


# which data files each native table of the catalog was loaded from (``serve: table``)
LOADED = "main._lakehouse_loaded"


# what each view of the catalog was made of (its files and comments; a reporting view's SQL
# and inputs), so that a catalog copied from the published one keeps the views whose tables
# did not change instead of binding them again (DuckDB reads every file's footer to do so)
VIEWS = "main._lakehouse_views"


def _forget_native(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, list[str]], dict[str, str]]:
    """In a catalog copied from the published one, keep the native tables loaded from data
    files (``serve: table``) and return which files each holds, and what each view was made
    of; other tables (empty ones) are dropped, to be recreated (they cost nothing to create).
    Views stay until the build knows which changed (``_made_of``)."""
    loaded: dict[str, list[str]] = {}
    made_from: dict[str, str] = {}
    own = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    if "_lakehouse_loaded" in own:
        loaded = {name: json.loads(files) for name, files in con.execute(f"SELECT name, files FROM {LOADED}").fetchall()}
    if "_lakehouse_views" in own:
        made_from = dict(con.execute(f"SELECT name, made_of FROM {VIEWS}").fetchall())
    for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                     "WHERE schema_name <> 'main'").fetchall():
        if f"{schema}.{table}" not in loaded:
            con.execute(f"DROP TABLE {_quote_ident(schema)}.{_quote_ident(table)}")
    return loaded, made_from


def _made_of(*parts: object) -> str:
    """A view's fingerprint: equal fingerprints, equal views (Delta files are immutable, so an
    unchanged file list is unchanged content)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _drop_view(con: duckdb.DuckDBPyConnection, layer: str, table: str) -> None:
    """A view of the copied catalog whose table is now a native one (served, or empty)."""
    if con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name = ?",
                   [layer, table]).fetchall()[0][0]:
        con.execute(f"DROP VIEW {layer}.{_quote_ident(table)}")


def _drop_stale_views(con: duckdb.DuckDBPyConnection, views: Mapping[str, str]) -> None:
    """Views of the copied catalog whose table or ``views.yaml`` entry is gone."""
    for schema, view in con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                                    "AND schema_name <> 'main'").fetchall():
        name = f"{schema}.{view}"
        if name not in views and name.removesuffix("_log") not in views:
            con.execute(f"DROP VIEW {_quote_ident(schema)}.{_quote_ident(view)}")


def _remember_views(con: duckdb.DuckDBPyConnection, views: Mapping[str, str]) -> None:
    con.execute(f"CREATE OR REPLACE TABLE {VIEWS} (name VARCHAR, made_of VARCHAR)")
    con.execute(f"COMMENT ON TABLE {VIEWS} IS 'The lakehouse''s own bookkeeping: a fingerprint of what each "
                "view was made of, so the next catalog recreates only the views whose tables changed'")
    if views:
        con.executemany(f"INSERT INTO {VIEWS} VALUES (?, ?)", list(views.items()))


def _partial_reloads_suffice(cfg: DomainConfig, published: Path, served: Mapping[str, str | None]) -> bool:
    try:
        with duckdb.connect(str(published), read_only=True) as con:
            loaded = dict(con.execute(f"SELECT name, files FROM {LOADED}").fetchall())
    except duckdb.Error:  # an older catalog without the bookkeeping, or none readable
        return False
    for table, partition in served.items():
        files = [str(f) for f in storage.data_files(cfg.lake, "gold", table)]
        if not files:
            continue
        before = json.loads(loaded[f"gold.{table}"]) if f"gold.{table}" in loaded else None
        changed = set(files).symmetric_difference(before or [])
        if before is None or (changed and (not partition or None in {_partition_value(f, partition)
                                                                      for f in changed})):
            return False
    return True


def _drop_stale_tables(con: duckdb.DuckDBPyConnection, built: Mapping[str, list[str]]) -> None:
    """Native tables of the copied catalog whose lake table is gone (or no longer served)."""
    for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                     "WHERE schema_name IN ('bronze', 'silver', 'gold')").fetchall():
        if f"{schema}.{table}" not in built:
            con.execute(f"DROP TABLE {schema}.{_quote_ident(table)}")


def _remember_loaded(con: duckdb.DuckDBPyConnection, built: Mapping[str, list[str]]) -> None:
    con.execute(f"CREATE OR REPLACE TABLE {LOADED} (name VARCHAR, files VARCHAR)")
    con.execute(f"COMMENT ON TABLE {LOADED} IS 'The lakehouse''s own bookkeeping: the data files each "
                "native table (serve: table) was loaded from, so the next catalog reloads only what changed'")
    if built:
        con.executemany(f"INSERT INTO {LOADED} VALUES (?, ?)", [(k, json.dumps(v)) for k, v in built.items()])


def _partition_value(path: str, column: str) -> str | None:
    from urllib.parse import unquote

    for part in Path(path).parts:
        if part.startswith(f"{column}="):
            return unquote(part.split("=", 1)[1])
    return None


def _load_table(con: duckdb.DuckDBPyConnection, layer: str, table: str, files: list[str],
                before: list[str] | None, partition: str | None,
                comment: tuple[str, dict[str, str]] | None) -> None:
    """A native table holding ``files``: kept when it already holds exactly them; else, for a
    partitioned table, the partitions whose files changed are deleted and loaded again (Delta
    files are immutable, so an unchanged file list is unchanged content); else loaded whole."""
    if before == files and _exists(con, layer, table):
        return
    changed = set(files).symmetric_difference(before or [])
    values = {_partition_value(f, partition) for f in changed} if partition else {None}
    name = f"{layer}.{_quote_ident(table)}"
    if before is not None and None not in values and _exists(con, layer, table):
        reload = [f for f in files if _partition_value(f, partition) in values]
        columns = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        if reload:
            scan = f"read_parquet({_sql_files(reload)}, hive_partitioning = true, union_by_name = true)"
            new_columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
        else:
            scan, new_columns = None, columns
        if sorted(new_columns) == sorted(columns):  # else the schema changed: load it whole
            con.execute(f"DELETE FROM {name} WHERE CAST({_quote_ident(partition)} AS VARCHAR) IN "
                        f"({', '.join(_quote_str(v) for v in sorted(values))})")
            if scan is not None:
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {scan}")
            log.info("catalog: %s.%s reloaded %d changed partition(s)", layer, table, len(values))
            return
    _create_view(con, layer, table, _sql_files(files), comment, materialise=True)
    log.info("catalog: %s.%s loaded whole", layer, table)


def _exists(con: duckdb.DuckDBPyConnection, layer: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                            [layer, table]).fetchone()[0])


def _sql_files(files: list[str]) -> str:
    return "[" + ", ".join(_quote_str(f) for f in files) + "]"


def _create_empty(con: duckdb.DuckDBPyConnection, layer: str, table: str, empty) -> None:
    """A committed table without rows (a Delta table has no data file then): an empty native
    table with its columns, so queries and reporting views over it work and return nothing."""
    con.register("_empty_table", empty.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE {layer}.{_quote_ident(table)} AS SELECT * FROM _empty_table")
    finally:
        con.unregister("_empty_table")


def _create_view(con: duckdb.DuckDBPyConnection, layer: str, table: str, source: str,
                 comment: tuple[str, dict[str, str]] | None, *, materialise: bool = False) -> None:
    """A view over the table's Parquet files, or with ``materialise`` a native table loaded from
    them (gold tables with ``serve: table``: DuckDB's own storage scans ~2-4x faster)."""
    name = f"{layer}.{_quote_ident(table)}"
    kind = "TABLE" if materialise else "VIEW"
    scan = f"read_parquet({source}, hive_partitioning = true, union_by_name = true)"
    if f"{layer}.{table}" in DEDUPED:
        keys, order = DEDUPED[f"{layer}.{table}"]
        con.execute(f"CREATE OR REPLACE VIEW {layer}.{_quote_ident(table + '_log')} AS SELECT * FROM {scan}")
        scan = f"(SELECT * FROM {scan} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1)"
    con.execute(f"CREATE OR REPLACE {kind} {name} AS SELECT * FROM {scan}")
    if comment is None:
        return
    table_comment, cols = comment
    if table_comment:
        con.execute(f"COMMENT ON {kind} {name} IS {_quote_str(table_comment)}")
    for col, text in _matching(cols, [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]).items():
        con.execute(f"COMMENT ON COLUMN {name}.{_quote_ident(col)} IS {_quote_str(text)}")


def _matching(comments: Mapping[str, str], columns: list[str]) -> dict[str, str]:
    """The comment of each of ``columns``: by name, else by a ``prefix_*`` key (generated names)."""
    import fnmatch

    patterns = [(k, v) for k, v in comments.items() if "*" in k]
    out = {}
    for col in columns:
        text = comments.get(col) or next((v for k, v in patterns if fnmatch.fnmatchcase(col, k)), None)
        if text:
            out[col] = text
    return out


def _create_reporting_views(con: duckdb.DuckDBPyConnection, cfg: DomainConfig,
                            comments: Mapping[str, tuple[str, dict[str, str]]],
                            lake: Mapping[str, str], made_from: Mapping[str, str]) -> dict[str, str]:
    """``views.yaml``: SQL views over the tables, created once every table they read exists;
    their columns commented as ``lakehouse.docs.view_comments`` says. A view whose SQL, comments
    and inputs are as they were is kept (DuckDB fixes a view's columns when it is created, so
    one whose input changed is created again). Returns each view's fingerprint."""
    from lakehouse.docs import view_comments

    column_comments = view_comments(cfg, dict(comments))
    present = {f"{s}.{t}" for s, t in con.execute(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
        "UNION ALL SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
    made: dict[str, str] = {}
    for view in cfg.views:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote_ident(view.schema_)}")
        name = f"{_quote_ident(view.schema_)}.{_quote_ident(view.name)}"
        inputs = sorted(set(re.findall(r"\b((?:bronze|silver|gold)\.[a-z0-9_]+)", view.sql)))
        missing = [t for t in inputs if t not in present]
        if missing:  # e.g. no forecast yet on a fresh lake: the view appears with its inputs
            log.info("view %s waits for %s", name, ", ".join(missing))
            continue
        key = f"{view.schema_}.{view.name}"
        made[key] = _made_of(view.sql, view.description, column_comments[key], [(t, lake.get(t)) for t in inputs])
        if made_from.get(key) == made[key]:
            continue
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {view.sql}")  # a broken view fails loudly
        con.execute(f"COMMENT ON VIEW {name} IS {_quote_str(view.description)}")
        columns = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        for col, text in _matching(column_comments[key], columns).items():
            con.execute(f"COMMENT ON COLUMN {name}.{_quote_ident(col)} IS {_quote_str(text)}")
    return made


def refresh_catalog(cfg: DomainConfig) -> Path:
    """Rebuild the catalog so it shows what was just published.

    Views name a snapshot of each table's files (``storage.table_source``), not a live glob,
    so analysts never read a partition while a run replaces it; the price is that new data
    appears when the catalog is rebuilt, which every daily run and ML task does.
    """
    return build_catalog(cfg)


def attach_lake(con: duckdb.DuckDBPyConnection, cfg: DomainConfig) -> duckdb.DuckDBPyConnection:
    """Let ``con`` read an object-store lake through fsspec (no-op for a local lake).

    DuckDB's own ``httpfs`` extension cannot be installed everywhere (not offline, not on
    this project's CI); fsspec's filesystem, registered on the connection, reads the same
    ``s3://``/``gs://``/``abfs://`` URIs the views name, with the environment's credentials.
    """
    if storage.is_remote(cfg.lake):
        con.register_filesystem(storage.filesystem(cfg.lake))
    return con


def sandbox_settings(cfg: DomainConfig) -> list[str]:
    """The statements that confine a connection to the lake: files outside it can't be read,
    nothing can be written, attached or installed, and the settings can't be undone.

    ``allowed_directories`` has to be set while external access is still on, then access is
    switched off and the configuration locked (DuckDB refuses the other order)."""
    lake = str(Path(cfg.lake).resolve()).rstrip("/") + "/"
    return [f"SET allowed_directories = [{_quote_str(lake)}]",
            "SET enable_external_access = false", "SET lock_configuration = true"]


def connect_read_only(cfg: DomainConfig, path: Path | None = None,
                      memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """How the pipeline itself (ML tasks) and analysts open the catalog: read-only and, for a
    local lake, sandboxed to it (``sandbox_settings``; docs/SECURITY.md). An object-store lake
    is read through a registered fsspec filesystem, not tested under the sandbox, so it is
    not applied there: the bucket policy (least-privilege credentials) is the boundary.

    ``memory_limit`` (e.g. ``"2GB"``) makes DuckDB spill to its temporary directory beyond it
    (next to the catalog file); by default DuckDB may take 80% of the machine's memory."""
    con = duckdb.connect(str(path or cfg.catalog_path), read_only=True)
    if memory_limit:
        con.execute(f"SET memory_limit = {_quote_str(memory_limit)}")  # before the sandbox locks settings
    if storage.is_remote(cfg.lake):
        return attach_lake(con, cfg)
    for statement in sandbox_settings(cfg):
        con.execute(statement)
    return con
