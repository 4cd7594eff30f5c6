"""Property: processing ingest batches in any order gives the same SCD2 history (hypothesis)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lakehouse import silver, storage
from lakehouse.config import DomainConfig

CONTRACT = {
    "entity": "items", "source": "src", "primary_key": ["item_id"], "updated_at": "updated_at",
    "history": "scd2", "max_quarantine_rate": 1.0,
    "columns": [
        {"name": "item_id", "type": "string", "nullable": False},
        {"name": "price", "type": "float64", "nullable": False, "ge": 0},
        {"name": "updated_at", "type": "datetime", "nullable": False},
    ],
}
T0 = datetime(2024, 1, 1)

changes = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 20), st.sampled_from([1.0, 2.0, 3.0, -1.0]),
              st.integers(0, 5)),
    min_size=1, max_size=30,
)


def _cfg(lake: Path) -> DomainConfig:
    return DomainConfig.model_validate({
        "name": "prop", "start_date": "2024-01-01", "lake_root": str(lake), "catalog_path": str(lake / "c.duckdb"),
        "sources": [], "contracts": [CONTRACT], "gold": [],
    })


def _process(lake: Path, batches: dict[int, pl.DataFrame], order: list[int],
             bucket_rows: int = silver.BUILD_BUCKET_ROWS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Silver's rows and the refused versions (``quarantine_conflicts``) after the batches."""
    cfg = _cfg(lake)
    default, silver.BUILD_BUCKET_ROWS = silver.BUILD_BUCKET_ROWS, bucket_rows
    try:
        for b in order:
            day = date(2024, 1, 1) + timedelta(days=b)
            storage.publish(batches[b], lake, "bronze", "src__items", {"ingest_date": day.isoformat()})
            silver.stage(cfg, "items", day, "prop")
            silver.build(cfg, "items")
    finally:
        silver.BUILD_BUCKET_ROWS = default
    refused = storage.read(lake, "silver", silver.CONFLICTS, {"entity": "items"})
    return storage.scan(lake, "silver", "items").collect(), (pl.DataFrame() if refused is None else refused)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=changes, seed=st.randoms(use_true_random=False))
def test_any_processing_order_gives_the_same_history(tmp_path_factory, stream, seed):
    rows = pl.DataFrame(
        [{"item_id": k, "updated_at": T0 + timedelta(hours=h), "price": p, "batch": b} for k, h, p, b in stream],
        schema={"item_id": pl.String, "updated_at": pl.Datetime("us"), "price": pl.Float64, "batch": pl.Int64})
    batches = {
        b: part.drop("batch").with_columns(
            _source_pointer=pl.format("batch{}#row={}", pl.lit(b), pl.int_range(pl.len())),
            # as bronze computes it: a hash of the raw row's content
            _record_hash=pl.struct("item_id", "updated_at", "price").hash().cast(pl.String),
            _ingested_at=pl.lit(T0))
        for (b,), part in rows.group_by("batch")
    }
    in_order = sorted(batches)
    shuffled = list(in_order)
    seed.shuffle(shuffled)
    a, refused = _process(tmp_path_factory.mktemp("ordered"), batches, in_order)
    b, refused_b = _process(tmp_path_factory.mktemp("shuffled"), batches, shuffled)
    assert_frame_equal(a, b, check_row_order=False)  # a table has no row order
    assert_frame_equal(refused, refused_b, check_row_order=False)
    # built in hash buckets of the key (what large tables get, bounded memory): the same rows,
    # and the same versions refused (found bucket by bucket)
    c, refused_c = _process(tmp_path_factory.mktemp("bucketed"), batches, shuffled, bucket_rows=2)
    assert_frame_equal(a, c, check_row_order=False)
    assert_frame_equal(refused, refused_c, check_row_order=False)
    # history is well formed: one current version per key, contiguous validity
    assert a.filter(pl.col("is_current")).get_column("item_id").is_duplicated().sum() == 0
    chained = a.sort("item_id", "valid_from").with_columns(nxt=pl.col("valid_from").shift(-1).over("item_id"))
    assert chained.filter(pl.col("valid_to").ne_missing(pl.col("nxt"))).height == 0


def test_batches_that_disagree_on_a_version_are_refused(tmp_path):
    cfg = _cfg(tmp_path)
    row = {"item_id": "a", "updated_at": T0, "_record_hash": "h", "_ingested_at": T0}
    for day, price in ((date(2024, 1, 1), 1.0), (date(2024, 1, 2), 5.0), (date(2024, 1, 3), 1.0)):
        frame = pl.DataFrame([row | {"price": price, "_source_pointer": f"{day}#row=2"}])
        storage.publish(frame, tmp_path, "bronze", "src__items", {"ingest_date": day.isoformat()})
        silver.stage(cfg, "items", day, "t")
    silver.build(cfg, "items")
    assert storage.scan(tmp_path, "silver", "items").collect().height == 0
    refused = storage.scan(tmp_path, "silver", "quarantine_conflicts").collect()
    assert refused["rule"].to_list() == ["conflicting_versions"]
    assert "2024-01-02#row=2" in refused["source_pointers"][0]


def test_bucketed_builds_equal_whole_builds_for_every_retail_entity(tiny, monkeypatch):
    """Three retail days, then every silver entity rebuilt in hash buckets of 20 staged rows:
    SCD2 (with flag deletes), latest and append tables hash equal to the whole-table build;
    snapshot-inferred deletes, which are not local to a key, keep the whole-table build."""
    from tests.conftest import START, run_day_direct

    cfg = tiny.cfg
    for i in range(3):
        tiny.advance(START + timedelta(days=i))
        run_day_direct(cfg, START + timedelta(days=i))
    whole = {c.entity: storage.content_hash(cfg.lake, "silver", c.entity) for c in cfg.contracts}
    monkeypatch.setattr(silver, "BUILD_BUCKET_ROWS", 20)
    spilled = []
    real = storage.spill_buckets

    def counting(frame, lake, key, buckets):
        spilled.append((key, buckets))
        return real(frame, lake, key, buckets)

    monkeypatch.setattr(storage, "spill_buckets", counting)
    for c in cfg.contracts:
        silver.build(cfg, c.entity)
    assert {c.entity: storage.content_hash(cfg.lake, "silver", c.entity) for c in cfg.contracts} == whole
    local = [c for c in cfg.contracts if silver.key_local(c)]
    assert {c.history for c in local} >= {"scd2", "latest"} and len(local) < len(cfg.contracts)
    big = [c for c in local if storage.row_count(cfg.lake, "silver", silver.stg_table(c.entity)) > 20]
    assert {c.history for c in big} >= {"scd2", "latest"}
    assert len(spilled) == len(big) and min(b for _, b in spilled) > 1
