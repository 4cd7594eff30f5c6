"""``lakehouse sql``: every requested row with whole values, CSV/JSON/Markdown for scripts, a
script on stdin, a prompt, and one line per SQL mistake (checked against DuckDB's own answers)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import duckdb
import polars as pl
import pytest

from lakehouse import catalog, storage

LONG = "x" * 300


@pytest.fixture
def lake_cfg(tiny):
    storage.publish(pl.DataFrame({"a": [3, 1, 2], "label": ["c", None, LONG]}), tiny.cfg.lake, "gold", "fct_demo")
    cfg = tiny.cfg.model_copy(update={"views": []})
    catalog.build_catalog(cfg)
    return cfg


def sql(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehouse.cli", "sql", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_a_table_prints_every_requested_row_whole(lake_cfg):
    out = sql("--max-rows", "80", f"SELECT range AS i, '{LONG}' AS long FROM range(100)")
    assert out.returncode == 0, out.stderr
    rows = [int(m) for m in re.findall(r"^│\s*(\d+)\s*┆", out.stdout, re.M)]
    assert rows == list(range(80)) and out.stdout.count(LONG) == 80
    assert out.stdout.rstrip().endswith("(80 rows, more not shown: raise --max-rows)")
    assert "Warning" not in out.stderr and out.stderr == ""
    everything = sql("--max-rows", "0", "--format", "csv", "SELECT range AS i FROM range(100)")
    assert everything.stdout.splitlines() == ["i", *map(str, range(100))]


def test_csv_and_json_equal_duckdbs_own_answer(lake_cfg):
    with duckdb.connect(str(lake_cfg.catalog_path), read_only=True) as con:
        expected = con.sql("SELECT a, label FROM gold.fct_demo ORDER BY a").fetchall()
    query = "SELECT a, label FROM gold.fct_demo ORDER BY a"
    as_json = json.loads(sql("--format", "json", query).stdout)
    assert [(r["a"], r["label"]) for r in as_json] == expected
    as_csv = list(csv.DictReader(io.StringIO(sql("--format", "csv", query).stdout)))
    assert [(int(r["a"]), r["label"] or None) for r in as_csv] == expected
    markdown = sql("--format", "markdown", query).stdout.splitlines()
    assert markdown[0].replace(" ", "") == "|a|label|" and len(markdown) == 2 + len(expected)


def test_a_script_runs_every_statement_and_a_mistake_is_one_line(lake_cfg):
    script = ("SELECT count(*) AS n FROM gold.fct_demo;\n"
              "SELECT nope FROM gold.fct_demo;\n"
              "SELECT sum(a) AS total FROM gold.fct_demo;\n")
    out = sql("--format", "csv", stdin=script)
    assert out.returncode == 1
    assert out.stdout.splitlines() == ["n", "3", "total", "6"]  # the statement after the mistake ran
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("lakehouse sql: Binder Error")
    assert "Traceback" not in out.stderr
    parse = sql("SELEC 1")
    assert parse.returncode == 1 and parse.stderr.startswith("lakehouse sql: Parser Error")


def test_the_prompt_keeps_one_sandboxed_session(lake_cfg, tmp_path):
    (tmp_path / "secret.csv").write_text("token\nhunter2\n")
    typed = "\n".join([
        ".tables",
        "SELECT sum(a)",
        "  AS total FROM gold.fct_demo;",
        ".format csv",
        f"SELECT * FROM read_csv('{tmp_path}/secret.csv');",
        "SELECT 7 AS seven;",
        ".quit",
        "SELECT 8 AS never;",
    ]) + "\n"
    out = sql("-i", stdin=typed)
    assert out.returncode == 0, out.stderr
    assert re.search(r"│\s*gold\s*┆\s*fct_demo\s*┆", out.stdout)
    assert re.search(r"│\s*6\s*│", out.stdout)  # a statement over two lines
    assert out.stdout.rstrip().endswith("seven\n7")  # .format took effect, .quit ended the session
    assert "Permission Error" in out.stderr and "hunter2" not in out.stdout + out.stderr
