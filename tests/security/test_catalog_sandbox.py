"""Analysts' DuckDB connections are read-only and cannot reach files outside the lake."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import polars as pl
import pytest

from lakehouse import catalog, storage


@pytest.fixture
def lake_cfg(tiny, tmp_path):
    storage.publish(pl.DataFrame({"a": [1, 2, 3]}), tiny.cfg.lake, "gold", "fct_demo")
    cfg = tiny.cfg.model_copy(update={"views": []})
    catalog.build_catalog(cfg)
    (tmp_path / "secret.csv").write_text("token\nhunter2\n")
    return cfg


ESCAPES = [
    "SELECT * FROM read_csv('{outside}/secret.csv')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('{lake}/../secret.csv')",  # a traversal out of the lake
    "SELECT * FROM glob('/etc/*')",
    "COPY (SELECT 1) TO '{outside}/out.csv'",
    "ATTACH '{outside}/other.duckdb'",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "RESET allowed_directories",
    "CREATE TABLE gold.x AS SELECT 1",
]


def test_the_catalog_reads_the_lake_and_nothing_else(lake_cfg, tmp_path):
    with catalog.connect_read_only(lake_cfg) as con:
        assert con.execute("SELECT sum(a) FROM gold.fct_demo").fetchone() == (6,)
        for query in ESCAPES:
            sql = query.format(outside=tmp_path, lake=lake_cfg.lake)
            with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException,
                                duckdb.CatalogException)):
                con.execute(sql).fetchall()
        assert con.execute("SELECT sum(a) FROM gold.fct_demo").fetchone() == (6,)  # still usable
    assert not (tmp_path / "out.csv").exists()


def test_the_sql_command_is_sandboxed_too(lake_cfg, tmp_path):
    run = [sys.executable, "-m", "lakehouse.cli", "sql"]
    ok = subprocess.run([*run, "SELECT count(*) AS n FROM gold.fct_demo"], capture_output=True, text=True)
    assert ok.returncode == 0 and "3" in ok.stdout, ok.stderr
    refused = subprocess.run([*run, f"SELECT * FROM read_csv('{tmp_path}/secret.csv')"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "Permission Error" in refused.stderr
    assert "hunter2" not in refused.stdout + refused.stderr
