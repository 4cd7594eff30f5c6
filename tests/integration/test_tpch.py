"""TPC-H as a second domain, configured only (configs/tpch): exact answers and reconciled counts.

Generates SF 0.01 with tpchgen-cli, delivers it as 2,401 daily drops per fact table plus six
snapshots, runs the pipeline, then runs the 22 standard queries over the catalog's ``tpch``
schema and over the raw generated files with DuckDB: every answer must agree.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from lakehouse import bronze, catalog, storage
from lakehouse.config import DomainConfig, load_domain
from pipelines.tpch.generate import TABLES, generate
from pipelines.tpch.queries import catalog_connection, queries, raw_views, same_rows

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "tpch"
SCALE = 0.01
LAST_ORDER_DATE = date(1998, 8, 2)


def run_day(cfg: DomainConfig, day: date) -> None:
    """The daily DAG's declared steps for one date (``lakehouse.steps.DAILY``), without Airflow;
    the HTML dashboard is left out (a page, not a layer)."""
    from tests.conftest import run_day_direct

    run_day_direct(cfg, day, run_id=f"run_{day}", skip=("write_report",))


def lake_for(home: Path, source: Path, start: date, monkeypatch: pytest.MonkeyPatch) -> DomainConfig:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    monkeypatch.setenv("TPCH_LANDING_DIR", str(source / "landing"))
    monkeypatch.setenv("TPCH_START_DATE", start.isoformat())
    return load_domain(CONFIG_DIR)


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory):
    """One lake loaded in one initial run of the last order date (the whole history)."""
    source = tmp_path_factory.mktemp("tpch_source")
    generate(SCALE, source)
    with pytest.MonkeyPatch.context() as mp:
        cfg = lake_for(tmp_path_factory.mktemp("tpch_lake"), source, LAST_ORDER_DATE, mp)
        run_day(cfg, LAST_ORDER_DATE)
        yield cfg, source / "raw"


def test_the_22_queries_over_gold_answer_what_duckdb_answers_on_the_raw_files(tpch):
    cfg, raw = tpch
    lake = catalog_connection(cfg.catalog_path)
    reference = raw_views(duckdb.connect(), raw)
    checked = []
    for number, sql in queries().items():
        got, want = lake.execute(sql).fetchall(), reference.execute(sql).fetchall()
        assert want, f"Q{number} returns nothing on the raw files: a query that can't fail"
        assert same_rows(got, want) is None, f"Q{number}: {same_rows(got, want)}"
        checked.append(number)
    assert checked == list(range(1, 23))


def test_every_generated_row_is_in_silver_and_gold_or_quarantined(tpch):
    cfg, raw = tpch
    con = duckdb.connect()
    for table in TABLES:
        generated = con.execute(f"SELECT count(*) FROM read_csv('{raw / f'{table}.csv'}')").fetchone()[0]
        source = next(s for s in cfg.sources if s.entity == table)
        in_bronze = storage.row_count(cfg.lake, "bronze", bronze.bronze_table(source.name, table))
        in_silver = storage.row_count(cfg.lake, "silver", table)
        quarantined = storage.scan(cfg.lake, "silver", "quarantine", missing_ok=True)
        rejected = 0 if quarantined is None else quarantined.filter(pl.col("entity") == table).select(pl.len()).collect().item()
        assert generated == in_bronze == in_silver + rejected, (table, generated, in_bronze, in_silver, rejected)
        assert rejected == 0, table  # tpchgen output satisfies every contract
    assert storage.row_count(cfg.lake, "gold", "fct_lineitem") == storage.row_count(cfg.lake, "silver", "lineitem")
    assert storage.row_count(cfg.lake, "gold", "fct_orders") == storage.row_count(cfg.lake, "silver", "orders")
    # monthly partitions, not one per day: ~80 files for 7 years of orders
    months = storage.partitions(cfg.lake, "gold", "fct_lineitem")
    assert 70 <= len(months) <= 90, len(months)


def test_daily_runs_build_the_same_gold_as_one_initial_load(tpch, tmp_path, monkeypatch):
    """Start three days before the last order date, then run each day: drops arrive by day. The
    daily runs compute only the months their orders touch (``touched_sql``) and skip every table
    whose inputs did not change, and still equal the one initial load, table by table."""
    from tests.conftest import LogLines

    cfg_once, raw = tpch
    start = LAST_ORDER_DATE - timedelta(days=3)
    cfg = lake_for(tmp_path, raw.parent, start, monkeypatch)
    days = [start + timedelta(days=i) for i in range(4)]
    sizes = []
    for day in days:
        with LogLines("lakehouse.gold") as messages, LogLines("lakehouse.catalog") as catalog_said:
            run_day(cfg, day)
        batch = storage.read(cfg.lake, "bronze", "lineitem_drop__lineitem", {"ingest_date": day.isoformat()})
        sizes.append(batch.height)
        if day > start:
            said = "\n".join(messages)
            for fact in ("fct_orders", "fct_lineitem", "agg_revenue_nation_month"):
                assert re.search(rf"gold\.{fact} partitions \([12] touched\)", said), (day, fact, said)
            for unchanged in ("dim_customer", "dim_part", "fct_partsupp"):
                assert f"gold.{unchanged}: no input changed since its last build" in said, (day, unchanged)
            # the catalog's native tables take the changed months, not a whole reload
            assert any(re.match(r"catalog: gold\.fct_lineitem reloaded [12] changed partition", m)
                       for m in catalog_said), (day, catalog_said)
            assert not [m for m in catalog_said if "loaded whole" in m], (day, catalog_said)
    assert sizes[0] > 50_000 and all(0 < n < 200 for n in sizes[1:]), sizes  # full load, then a day each
    hashes = storage.layer_hashes(cfg.lake, ignore=("_ingested_at", "_run_id"))
    once = storage.layer_hashes(cfg_once.lake, ignore=("_ingested_at", "_run_id"))
    gold_tables = [t for t in once if t.startswith("gold.") and t != "gold.quality_checks"]
    assert len(gold_tables) == 10
    assert {t: hashes[t] for t in gold_tables} == {t: once[t] for t in gold_tables}
    # the catalog brought up to date partition by partition serves what a fresh one does
    fresh = catalog.build_catalog(cfg, tmp_path / "fresh.duckdb")
    with duckdb.connect(str(cfg.catalog_path), read_only=True) as con:
        con.execute(f"ATTACH '{fresh}' AS fresh (READ_ONLY)")
        served = [g.name for g in cfg.gold if g.serve == "table"]
        assert len(served) == 8
        for table in served:
            for a, b in ((f"gold.{table}", f"fresh.gold.{table}"), (f"fresh.gold.{table}", f"gold.{table}")):
                assert con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchone()[0] == 0, table
            assert con.execute(f"SELECT count(*) FROM gold.{table}").fetchone()[0] == \
                storage.row_count(cfg.lake, "gold", table), table


def test_every_gold_column_and_tpch_view_is_documented(tpch):
    from tests.integration.test_airflow_dag import assert_documented

    assert_documented(tpch[0])
