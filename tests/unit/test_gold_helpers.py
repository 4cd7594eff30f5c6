"""The helpers incremental gold builds are written with (``lakehouse.gold``), against plain
Python computations of the same sets."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from lakehouse import delta, gold

D = date(2026, 11, 1)


def test_date_runs_are_the_consecutive_stretches():
    days = [D, D + timedelta(days=1), D + timedelta(days=3), D + timedelta(days=1), D - timedelta(days=9)]
    assert gold.date_runs(days) == [(D - timedelta(days=9), D - timedelta(days=9)),
                                    (D, D + timedelta(days=1)), (D + timedelta(days=3), D + timedelta(days=3))]


def test_on_dates_selects_exactly_those_days_for_dates_and_datetimes():
    rng = random.Random(4)
    stamps = [datetime(2026, 10, 1) + timedelta(minutes=rng.randrange(60 * 24 * 60)) for _ in range(2_000)]
    wanted = sorted({s.date() for s in rng.sample(stamps, 40)})
    for tz in (None, "UTC"):
        frame = pl.LazyFrame({"at": stamps}).with_columns(pl.col("at").dt.replace_time_zone(tz))
        got = gold.on_dates(frame, "at", wanted).collect()["at"].to_list()
        assert sorted(s.replace(tzinfo=None) for s in got) == sorted(s for s in stamps if s.date() in wanted)
    days = pl.LazyFrame({"day": [s.date() for s in stamps]})
    assert gold.on_dates(days, "day", wanted).collect().height == sum(s.date() in wanted for s in stamps)
    assert gold.on_dates(days, "day", []).collect().is_empty()


def test_key_ranges_cover_every_value_in_few_ranges():
    ids = pl.Series([f"O{i:08d}" for i in random.Random(1).sample(range(100_000), 500)])
    ranges = gold.key_ranges(ids, max_ranges=32)
    assert ranges.height <= 32
    table = pl.LazyFrame({"order_id": [f"O{i:08d}" for i in range(100_000)]})
    kept = set(table.filter(gold.in_ranges("order_id", ranges)).collect()["order_id"])
    assert set(ids) <= kept
    assert table.filter(gold.in_ranges("order_id", ranges.clear())).collect().is_empty()


def test_new_versions_reach_their_members_facts_from_the_earliest_change_on():
    facts = pl.LazyFrame({"day": [D + timedelta(days=i) for i in range(6)] * 2,
                          "product_id": ["p"] * 6 + ["q"] * 6})
    # p: a version from day 3 on replaces one from day 4 (both images); q: an inferred member only
    changed = pl.LazyFrame({
        "product_id": ["p", "p", "q"], "valid_from": [datetime(2026, 11, 4, 10), datetime(2026, 11, 5, 8), None],
        "product_sk": [2, 3, 9], delta.CHANGE: [1, -1, 1]})
    got = gold.partitions_after_new_versions(changed, facts, key="product_id", sk="product_sk", partition="day")
    assert sorted(got.collect()["day"]) == [D + timedelta(days=i) for i in range(3, 6)]
    nothing = changed.filter(pl.col("product_id") == "q")
    assert gold.partitions_after_new_versions(nothing, facts, key="product_id", sk="product_sk",
                                              partition="day").collect().is_empty()


def test_a_sql_model_reads_the_tables_it_names_not_its_aliases_strings_or_ctes():
    from pathlib import Path

    from lakehouse.config import load_domain

    cfg = load_domain(Path(__file__).resolve().parents[2] / "configs" / "tpch")
    sql = """WITH orders AS (SELECT 1 AS k)
             SELECT o.k AS lineitem, 'customer' AS note FROM orders o JOIN region r USING (k)
             WHERE k IN (SELECT n_regionkey FROM nation)"""
    assert sorted(gold.sql_inputs(cfg, sql)) == ["nation", "region"]
    # every shipped model: its inputs are the tables of its FROM and JOIN clauses
    lineitem = next(t for t in cfg.gold if t.name == "fct_lineitem")
    assert sorted(gold.sql_inputs(cfg, lineitem.sql)) == ["lineitem", "orders"]


def test_a_sql_models_touched_sql_must_read_the_changes_of_every_input(tmp_path, monkeypatch):
    """A change in an input the touched SQL ignores would leave its partitions stale: refused."""
    from pathlib import Path

    import pydantic

    from lakehouse.config import GoldTable, load_domain

    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    cfg = load_domain(Path(__file__).resolve().parents[2] / "configs" / "tpch")
    lines = next(g for g in cfg.gold if g.name == "fct_lineitem")
    blind = lines.model_copy(update={"touched_sql": "SELECT DATE '1998-01-01' AS order_month FROM changed_orders"})
    with pytest.raises(ValueError, match="touched_sql must read changed_lineitem"):
        gold.touched_partitions(cfg, blind, date(1998, 8, 2))
    with pytest.raises(pydantic.ValidationError, match="touched_sql needs sql and partition_by"):
        GoldTable(name="fct_x", description="x", sql="SELECT 1 AS a", touched_sql="SELECT 1 AS a")
