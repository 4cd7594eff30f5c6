"""The 22 TPC-H queries (validation parameters) and the ways the benchmark and the
differential test run them: over the lakehouse catalog, over the raw generated CSV files,
and over DuckDB native tables loaded from those files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb

from pipelines.tpch.generate import TABLES

QUERY_DIR = Path(__file__).with_name("queries")


def queries() -> dict[int, str]:
    """Query number -> SQL text, as in ``queries/qNN.sql``."""
    return {int(p.stem[1:]): p.read_text() for p in sorted(QUERY_DIR.glob("q*.sql"))}


def _csv(path: Path) -> str:
    return "read_csv('" + str(path).replace("'", "''") + "', header = true)"


def raw_views(con: duckdb.DuckDBPyConnection, raw: Path) -> duckdb.DuckDBPyConnection:
    """The 8 tables as views straight over the generated CSV files (DuckDB's own typing)."""
    for table in TABLES:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {_csv(raw / f'{table}.csv')}")
    return con


def native_tables(con: duckdb.DuckDBPyConnection, raw: Path) -> duckdb.DuckDBPyConnection:
    """The 8 tables loaded into DuckDB native storage (the serving baseline of the benchmark)."""
    for table in TABLES:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {_csv(raw / f'{table}.csv')}")
    return con


def catalog_connection(catalog_path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the lakehouse catalog where the 22 queries run unchanged."""
    con = duckdb.connect(str(catalog_path), read_only=True)
    con.execute("SET search_path = 'tpch'")
    return con


def _norm(value: object) -> object:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return float(value)
    return value


def same_rows(got: Sequence[tuple], want: Sequence[tuple], rel: float = 1e-9) -> str | None:
    """``None`` if the results agree, else what differs.

    Values must be equal, except numbers, which may differ in type (the lakehouse types
    prices and quantities as DOUBLE, DuckDB's CSV sniffer picks BIGINT where a column
    holds integers) and, for floating point, by ``rel`` (sums of doubles depend on the
    order in which threads add them).
    """
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)}"
    for i, (g_row, w_row) in enumerate(zip(got, want, strict=True)):
        for j, (g, w) in enumerate(zip(map(_norm, g_row), map(_norm, w_row), strict=True)):
            if isinstance(g, float) and isinstance(w, float):
                if not math.isclose(g, w, rel_tol=rel, abs_tol=1e-9):
                    return f"row {i} column {j}: {g!r} != {w!r}"
            elif g != w and not (isinstance(g, date) and isinstance(w, date) and g == w):
                return f"row {i} column {j}: {g!r} != {w!r}"
    return None
