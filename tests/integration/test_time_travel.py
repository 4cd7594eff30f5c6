"""Time travel: ``lakehouse sql --as-of`` answers as the lake did at an earlier moment or version.

Two daily runs; the answers after the first are recorded from the served catalog at that
moment, and the time-travel query after the second must give them back, while the served
catalog moved on. Mistakes (a bad ``--as-of``, a table not there yet, broken SQL) are one
line on stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from lakehouse import storage
from lakehouse.catalog import connect_read_only
from tests.conftest import START, run_day_direct

QUERY = ("SELECT count(*) AS lines, round(sum(net_amount), 2) AS revenue, max(order_date) AS newest "
         "FROM gold.fct_order_lines")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=300)


def _served(cfg) -> tuple:
    with connect_read_only(cfg) as con:
        return con.execute(QUERY).fetchone()


def test_sql_as_of_a_moment_or_a_version_answers_as_the_lake_did(tiny):
    before_any = datetime.now(UTC)
    time.sleep(0.05)
    tiny.advance(START)
    run_day_direct(tiny.cfg, START, skip=("write_report",))
    first = _served(tiny.cfg)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    day2 = START + timedelta(days=1)
    tiny.advance(day2)
    run_day_direct(tiny.cfg, day2, skip=("write_report",))
    second = _served(tiny.cfg)
    assert second != first  # the day added rows: otherwise the test could not tell versions apart

    then = _cli("sql", "--as-of", moment.isoformat(), "--max-rows", "5",
                f"SELECT lines, revenue, newest::VARCHAR AS newest FROM ({QUERY})")
    assert then.returncode == 0, then.stderr
    lines, revenue, newest = first
    assert f"{lines}" in then.stdout and f"{revenue}" in then.stdout and newest.isoformat() in then.stdout
    # bronze is not versioned yet; silver is (its staged batches too)
    assert "served as now" in then.stderr and "bronze." in then.stderr and "silver." not in then.stderr

    # a pinned version: version 0 of the fact table, computed independently with Polars
    root = storage.table_dir(tiny.cfg.lake, "gold", "fct_order_lines")
    v0 = pl.scan_delta(str(root), version=0).select(pl.len()).collect().item()
    pinned = _cli("sql", "--as-of", "gold.fct_order_lines@0", "SELECT count(*) AS n FROM gold.fct_order_lines")
    assert pinned.returncode == 0, pinned.stderr
    assert f"│ {v0} " in pinned.stdout

    history = json.loads(_cli("history", "gold.fct_order_lines").stdout)
    assert [h["version"] for h in history] == sorted((h["version"] for h in history), reverse=True)
    assert history[-1]["version"] == 0 and history[0]["committed_at"] > moment.isoformat()

    # before the first commit the gold tables did not exist: a one-line error, no traceback
    early = _cli("sql", "--as-of", before_any.isoformat(), QUERY)
    assert early.returncode != 0 and "fct_order_lines" in early.stderr
    assert "Traceback" not in early.stderr and len(early.stderr.strip().splitlines()) <= 2
    for bad in (["--as-of", "yesterday-ish"], ["--as-of", "gold.no_such_table@1"],
                ["--as-of", "gold.fct_order_lines@999"]):
        out = _cli("sql", *bad, QUERY)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().startswith("lakehouse:"), out.stderr
    broken = _cli("sql", "SELEC 1")
    assert broken.returncode != 0 and broken.stderr.startswith("lakehouse sql:") and "Traceback" not in broken.stderr

    # a documented DuckDB way: a catalog file as of the moment, for the duckdb CLI or any client
    out_file = tiny.home / "as_of.duckdb"
    assert _cli("catalog", "--as-of", moment.isoformat(), "--out", str(out_file)).returncode == 0
    with connect_read_only(tiny.cfg, out_file) as con:
        assert con.execute(QUERY).fetchone() == first
    assert _served(tiny.cfg) == second  # the served catalog is untouched


def test_sql_prints_every_requested_row_and_whole_values(tiny):
    tiny.advance(START)
    run_day_direct(tiny.cfg, START, skip=("write_report",))
    query = ("SELECT i, repeat('x', 120) || i::VARCHAR AS long_text FROM range(80) t(i) ORDER BY i")
    out = _cli("sql", "--max-rows", "100", query)
    assert out.returncode == 0, out.stderr
    assert "x" * 120 + "79" in out.stdout and "x" * 120 + "0 " in out.stdout
    assert "…" not in out.stdout and "Warning" not in out.stderr
    capped = _cli("sql", "--max-rows", "7", query)
    assert "x" * 120 + "6" in capped.stdout and "x" * 120 + "7" not in capped.stdout
