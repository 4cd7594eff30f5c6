"""The catalog is brought up to date, not rebuilt: a daily run recreates the views of the tables
that changed and keeps the others, and the result serves what a catalog built from nothing does."""

from __future__ import annotations

import re
from datetime import timedelta

import duckdb

from lakehouse import catalog
from tests.conftest import START, LogLines, run_day_direct

OBJECTS = ("SELECT schema_name, view_name, comment, 'view' FROM duckdb_views() WHERE database_name = $db "
           "AND NOT internal AND schema_name <> 'main' UNION ALL SELECT schema_name, table_name, comment, "
           "'table' FROM duckdb_tables() WHERE database_name = $db AND schema_name <> 'main'")
COLUMNS = ("SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
           "WHERE database_name = $db AND schema_name <> 'main'")


def kept_and_created(said: list[str]) -> tuple[int, int, int]:
    found = [re.match(r"catalog: (\d+) of (\d+) views unchanged and kept, (\d+) created", m) for m in said]
    return next(tuple(int(g) for g in m.groups()) for m in found if m)


def assert_serves_the_same(published, fresh) -> None:
    """The same views and tables, columns and comments, and the same rows in each."""
    with duckdb.connect(":memory:") as con:
        con.execute(f"ATTACH '{published}' AS mine (READ_ONLY)")
        con.execute(f"ATTACH '{fresh}' AS fresh (READ_ONLY)")
        objects = {db: sorted(con.execute(OBJECTS, {"db": db}).fetchall()) for db in ("mine", "fresh")}
        assert objects["mine"] == objects["fresh"]
        assert len(objects["mine"]) > 20
        columns = {db: sorted(con.execute(COLUMNS, {"db": db}).fetchall()) for db in ("mine", "fresh")}
        assert columns["mine"] == columns["fresh"]
        for schema, name, _, _ in objects["mine"]:
            here, there = f'mine."{schema}"."{name}"', f'fresh."{schema}"."{name}"'
            for a, b in ((here, there), (there, here)):
                extra = con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchall()[0][0]
                assert extra == 0, f"{a} has {extra} row(s) that {b} has not"


def test_a_daily_run_recreates_only_the_views_of_changed_tables(tiny, tmp_path):
    cfg = tiny.cfg
    tiny.advance(START)
    run_day_direct(cfg, START)
    catalog.build_catalog(cfg)  # takes the tables written after the run's catalog (quality checks)
    with LogLines("lakehouse.catalog") as said:
        catalog.build_catalog(cfg)
    kept, total, created = kept_and_created(said)
    assert total > 20 and (kept, created) == (total, 0), said  # nothing changed: every view kept

    day = START + timedelta(days=1)
    tiny.advance(day)
    with LogLines("lakehouse.catalog") as said:
        run_day_direct(cfg, day)
    kept, total, created = kept_and_created(said)
    # the day's batch changes order lines, orders, bronze and gold; products' dimension tables
    # (no change in a day of the tiny world) and the supplier tables stay as they were
    assert 0 < kept < total and created > 0, said
    with LogLines("lakehouse.catalog") as said:
        catalog.build_catalog(cfg)  # the quality checks written after the run's catalog
    assert kept_and_created(said)[2] == 1 and "(gold.quality_checks)" in said[-1], said
    assert_serves_the_same(cfg.catalog_path, catalog.build_catalog(cfg, tmp_path / "fresh.duckdb"))
