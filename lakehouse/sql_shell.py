"""The analyst's SQL command: queries on the read-only, sandboxed catalog, printed whole.

``lakehouse sql "SELECT ..."`` runs one or more statements; ``lakehouse sql < file.sql`` runs
a script; ``lakehouse sql`` at a terminal (or ``--interactive``) opens a prompt on the same
connection. The DuckDB CLI is not the way in here: the registry's ``duckdb-cli`` (1.5.6)
cannot open a catalog written by the library (2.0: "version number 69, but we can only read
versions between 64 and 68"), and it would not carry the sandbox settings by itself.

Output is a table with every requested row and whole values, or CSV, JSON (an array of row
objects) or Markdown for scripts and documents. At most ``max_rows`` rows are fetched (one
more to know that there are more), so a ``SELECT *`` over a fact table does not read it all
into memory. An SQL mistake is one line on stderr; the other statements still run; the
exit status says whether any failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

import duckdb
import polars as pl

FORMATS = ("table", "csv", "json", "markdown")
HELP = """statements end with ';' and may span lines. Commands:
  .tables              the catalog's schemas, tables and views
  .describe NAME       the columns of a table or view (e.g. .describe gold.fct_order_lines)
  .format FORMAT       table, csv, json or markdown
  .maxrows N           rows printed per result (0: all)
  .help  .quit         this text; leave (or Ctrl-D)"""


def render(frame: pl.DataFrame, fmt: str, *, more: bool = False) -> str:
    """Pure: ``frame`` as ``fmt``; ``more`` says rows were left out (a table says so below it)."""
    if fmt == "csv":
        return frame.write_csv().rstrip("\n")
    if fmt == "json":
        return json.dumps(frame.to_dicts(), default=str, indent=1)
    # widths are a u16 in Polars: 65,000 characters is as wide as a table can be
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60_000, fmt_table_cell_list_len=-1,
                   tbl_width_chars=65_000, fmt_float="full", tbl_hide_dataframe_shape=True,
                   tbl_formatting="MARKDOWN" if fmt == "markdown" else "UTF8_FULL_CONDENSED",
                   tbl_hide_column_data_types=fmt == "markdown"):
        text = str(frame)
    rows = f"{frame.height:,} row{'s' if frame.height != 1 else ''}"
    return text + ("" if fmt == "markdown" else
                   f"\n({rows}{', more not shown: raise --max-rows' if more else ''})")


def run(con: duckdb.DuckDBPyConnection, text: str, *, fmt: str, max_rows: int,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run every statement of ``text`` in order; print each result; returns how many failed."""
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        print(f"lakehouse sql: {_first_line(exc)}", file=err)
        return 1
    failed = 0
    for statement in statements:
        try:
            relation = con.sql(statement.query)
            if relation is None:  # a statement with no result (SET, PRAGMA ...)
                continue
            limited = relation.limit(max_rows + 1) if max_rows > 0 else relation
            frame = pl.from_arrow(limited.to_arrow_table())
        except duckdb.Error as exc:
            print(f"lakehouse sql: {_first_line(exc)}", file=err)
            failed += 1
            continue
        more = max_rows > 0 and frame.height > max_rows
        print(render(frame.head(max_rows) if more else frame, fmt, more=more), file=out, flush=True)
    return failed


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_line(prompt: str) -> str:
    """A line typed at a terminal (with line editing), or read from piped input with no prompt
    (a prompt would land in the output)."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def repl(con: duckdb.DuckDBPyConnection, *, fmt: str, max_rows: int,
         read: Callable[[str], str] = read_line, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """A prompt on ``con`` until ``.quit`` or end of input; returns how many statements failed."""
    print("lakehouse sql: read-only and sandboxed to the lake; .help for commands", file=err)
    buffer: list[str] = []
    failed = 0
    while True:
        try:
            line = read("lakehouse> " if not buffer else "       ...> ")
        except EOFError:
            break
        except KeyboardInterrupt:
            buffer = []
            print(file=err)
            continue
        if not buffer and line.strip().startswith("."):
            command, _, arg = line.strip().partition(" ")
            if command in (".quit", ".exit"):
                break
            fmt, max_rows, failed = _dot(con, command, arg.strip(), fmt, max_rows, failed, out, err)
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            failed += run(con, "\n".join(buffer), fmt=fmt, max_rows=max_rows, out=out, err=err)
            buffer = []
    if any(part.strip() for part in buffer):
        failed += run(con, "\n".join(buffer), fmt=fmt, max_rows=max_rows, out=out, err=err)
    return failed


def _dot(con, command: str, arg: str, fmt: str, max_rows: int, failed: int,
         out: TextIO, err: TextIO) -> tuple[str, int, int]:
    """One dot command; returns the (possibly changed) format, row limit and failure count."""
    if command == ".tables":
        failed += run(con, "SELECT table_schema AS schema, table_name AS name, table_type AS type "
                           "FROM information_schema.tables ORDER BY ALL", fmt=fmt, max_rows=0, out=out, err=err)
    elif command == ".describe" and arg:
        failed += run(con, f"DESCRIBE {arg}", fmt=fmt, max_rows=0, out=out, err=err)
    elif command == ".format" and arg in FORMATS:
        fmt = arg
    elif command == ".maxrows" and arg.isdigit():
        max_rows = int(arg)
    elif command == ".help":
        print(HELP, file=err)
    else:
        print(f"lakehouse sql: unknown or incomplete command {command} {arg}".rstrip() + "; .help lists them",
              file=err)
    return fmt, max_rows, failed
