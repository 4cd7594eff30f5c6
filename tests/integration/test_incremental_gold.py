"""Property: a gold table built incrementally (only the partitions its inputs' changes touch,
``touched`` in gold.yaml) equals the same table computed in full from the same inputs, after
every daily run: new days, late corrections of old lines, new product versions, forecasts
gaining actuals.

The oracle is the table's own definition evaluated whole (``gold.define``), not a second
incremental path, so a ``touched`` function that misses a partition fails here.
"""

from __future__ import annotations

import re
from datetime import timedelta

import polars as pl
import pytest

from lakehouse import delta, gold, steps, storage
from tests.conftest import START, LogLines, run_day_direct


def _incremental_tables(cfg) -> list:
    return [t for t in cfg.gold if t.touched]


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(sorted(frame.columns)).sort(pl.all())


def _assert_equals_full(cfg, day) -> None:
    for table in _incremental_tables(cfg):
        full = gold.define(cfg, table, day)
        stored = storage.scan(cfg.lake, "gold", table.name, missing_ok=True)
        if full is None:
            assert stored is None or stored.select(pl.len()).collect().item() == 0, table.name
            continue
        expected = _sorted(full.collect())
        got = _sorted(stored.collect().select(expected.columns))
        assert got.equals(expected), f"{day}: gold.{table.name} differs from a full build"


def _correct_old_line(cfg, day) -> str:
    """A late correction in the ERP: an old line's quantity changes (updated now)."""
    import sqlalchemy as sa

    engine = sa.create_engine(cfg.source("erp").url)
    with engine.begin() as conn:
        line = conn.execute(sa.text("SELECT order_line_id FROM order_lines ORDER BY order_line_id LIMIT 1")).scalar()
        conn.execute(sa.text("UPDATE order_lines SET quantity = quantity + 7, updated_at = :at "
                             "WHERE order_line_id = :id"), {"at": f"{day} 06:00:00", "id": line})
    return line


def test_incremental_gold_equals_a_full_build_after_every_run(tiny):
    days = [START + timedelta(days=i) for i in range(4)]
    with LogLines("lakehouse.gold") as said:
        _daily_runs_checked_against_full_builds(tiny, days)
    # the later runs took the incremental path for the facts (not a full build every time)
    touched = [m for m in said if "touched" in m]
    assert any("fct_order_lines" in m for m in touched), touched
    assert any("fct_forecast_accuracy" in m for m in touched), touched


def _daily_runs_checked_against_full_builds(tiny, days) -> None:
    for i, day in enumerate(days):
        tiny.advance(day)
        if i == 2:
            _correct_old_line(tiny.cfg, day)
        run_day_direct(tiny.cfg, day)
        # the day's scoring publishes forecasts after gold was built: build again to take them in
        gold.build_all(tiny.cfg, day)
        _assert_equals_full(tiny.cfg, day)
        if i == 1:  # the weekly training scores forecasts, which the next runs score against sales
            steps.run_local(steps.TRAINING, steps.RunContext(cfg=tiny.cfg, run_date=day + timedelta(days=1),
                                                             run_id="test"))


def test_a_rerun_recomputes_nothing_and_commits_nothing(tiny):
    days = [START, START + timedelta(days=1)]
    for day in days:
        tiny.advance(day)
        run_day_direct(tiny.cfg, day)
    built = [t for t in _incremental_tables(tiny.cfg)  # accuracy waits for forecasts (none here)
             if delta.is_table(storage.table_dir(tiny.cfg.lake, "gold", t.name))]
    assert len(built) == 3
    versions = {t.name: delta.version(storage.table_dir(tiny.cfg.lake, "gold", t.name)) for t in built}
    with LogLines("lakehouse.gold") as said:
        gold.build_all(tiny.cfg, days[-1])
    assert {t.name: delta.version(storage.table_dir(tiny.cfg.lake, "gold", t.name)) for t in built} == versions
    for name in versions:
        assert any(f"gold.{name}: no input changed" in m for m in said), name


def test_a_new_definition_is_built_in_full(tiny, monkeypatch):
    """State of an older definition is never used: the fingerprint covers the YAML and the code."""
    tiny.advance(START)
    run_day_direct(tiny.cfg, START)
    table = next(t for t in tiny.cfg.gold if t.name == "fct_order_lines")
    assert gold.touched_partitions(tiny.cfg, table, START) == []
    changed = table.model_copy(update={"sort_by": ["order_line_id", "order_id"]})
    assert gold.touched_partitions(tiny.cfg, changed, START) is None


def test_a_touched_function_must_see_every_input_of_its_builder(tiny):
    tiny.advance(START)
    run_day_direct(tiny.cfg, START)
    table = next(t for t in tiny.cfg.gold if t.name == "fct_inventory_daily")
    partial = table.model_copy(update={"touched": "tests.integration.test_incremental_gold:_blind"})
    with pytest.raises(ValueError, match="changed_dim_product"):
        gold.touched_partitions(tiny.cfg, partial, START)


def _blind(*, changed_inventory_counts: pl.LazyFrame) -> pl.LazyFrame:
    return changed_inventory_counts.select("count_date")


def test_a_large_build_computed_a_chunk_of_partitions_at_a_time_equals_the_whole_build(tiny, monkeypatch):
    """A full build of a large partitioned table runs its builder on chunks of partitions
    (bounded memory, ADR 0017): the chunks found by the ``touched`` function told that every
    input row is new must cover every partition of the whole build, or a partition is lost.
    An incremental build touching many partitions is computed and committed in chunks too."""
    days = [START + timedelta(days=i) for i in range(4)]
    for i, day in enumerate(days):
        tiny.advance(day)
        run_day_direct(tiny.cfg, day)
        if i == 1:  # forecasts for the next days, which the later runs score against sales
            steps.run_local(steps.TRAINING, steps.RunContext(cfg=tiny.cfg, run_date=day + timedelta(days=1),
                                                             run_id="test"))
    gold.build_all(tiny.cfg, days[-1])
    assert storage.row_count(tiny.cfg.lake, "gold", "fct_forecast_accuracy") > 0
    chunked: dict[str, int] = {}
    real = gold.every_partition_in_chunks

    def counting(cfg, table, run_date):
        # several partitions a chunk, as at scale (a partition each, as 50 rows gave, took 7 s)
        monkeypatch.setattr(gold, "FULL_BUILD_ROWS", 50 if table.name == "fct_inventory_daily" else 1_000)
        chunks = real(cfg, table, run_date)
        chunked[table.name] = len(chunks or [])
        return chunks

    monkeypatch.setattr(gold, "every_partition_in_chunks", counting)
    gold.build_all(tiny.cfg, days[-1], full=True)
    assert chunked["fct_order_lines"] > 3 and chunked["fct_inventory_daily"] > 3, chunked
    assert chunked["agg_sales_category_warehouse_daily"] > 3 and chunked["fct_forecast_accuracy"] > 1, chunked
    _assert_equals_full(tiny.cfg, days[-1])
    monkeypatch.setattr(gold, "every_partition_in_chunks", real)

    # an incremental build touching many dates (every line corrected late) is computed and
    # committed a chunk of them at a time: each chunk a commit, together the whole build
    import sqlalchemy as sa

    day = days[-1] + timedelta(days=1)
    tiny.advance(day)
    with sa.create_engine(tiny.cfg.source("erp").url).begin() as conn:
        conn.execute(sa.text("UPDATE order_lines SET quantity = quantity + 1, updated_at = :at"),
                     {"at": f"{day} 06:00:00"})
    facts = storage.table_dir(tiny.cfg.lake, "gold", "fct_order_lines")
    before = delta.version(facts)
    monkeypatch.setattr(gold, "FULL_BUILD_ROWS", 1_000)  # about 11 of the facts' dates a chunk
    with LogLines("lakehouse.gold") as said:
        run_day_direct(tiny.cfg, day)
    chunks = [m for m in said if m.startswith("gold.fct_order_lines partitions (")]
    dates = len(storage.partitions(tiny.cfg.lake, "gold", "fct_order_lines"))
    assert dates > 100 and 3 < len(chunks) < dates / 5, chunks
    # every date touched once, across the chunks (the day's own date included)
    assert sum(int(re.search(r"\((\d+) touched\)", m)[1]) for m in chunks) == dates, chunks
    assert delta.version(facts) - before == len(chunks)  # a commit each, none empty
    _assert_equals_full(tiny.cfg, day)
