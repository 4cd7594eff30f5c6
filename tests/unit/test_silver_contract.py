import json
from datetime import datetime

import polars as pl
import pytest

from lakehouse.config import ColumnContract, EntityContract
from lakehouse.silver import QualityGateError, _quarantine_rows, split_valid, type_batch

CONTRACT = EntityContract(
    entity="lines", source="erp", primary_key=["line_id"], updated_at="updated_at",
    columns=[
        ColumnContract(name="line_id", type="string", nullable=False),
        ColumnContract(name="qty", type="int64", nullable=False, ge=1),
        ColumnContract(name="sku", type="string", pattern="^SKU[0-9]{3}$", source_column="product"),
        ColumnContract(name="updated_at", type="datetime", nullable=False),
    ],
)


def _raw() -> pl.DataFrame:
    return pl.DataFrame({
        "line_id": ["L1", "L2", "L3", "L4", "L4", None],
        "qty": ["2", "-1", "x", "3", "3", "1"],
        "product": ["SKU001", "SKU002", "SKU003", "bad", "SKU004", "SKU005"],
        "updated_at": ["2024-01-01 10:00:00"] * 6,
        "_source_pointer": [f"f.csv#row={i}" for i in range(2, 8)],
        "_record_hash": [f"h{i}" for i in range(6)],
    })


def test_every_raw_row_is_valid_or_quarantined_with_a_reason():
    typed, parse_failures = type_batch(_raw(), CONTRACT, where="test")
    valid, failed = split_valid(typed, parse_failures, CONTRACT)
    quarantined = _quarantine_rows(_raw(), failed, "run", CONTRACT)
    assert valid["line_id"].to_list() == ["L1"]
    assert valid.height + quarantined.height == _raw().height
    reasons = dict(zip(quarantined["source_pointer"], quarantined["reason"], strict=True))
    assert "qty failed greater_than_or_equal_to(1.0) (value: -1)" in reasons["f.csv#row=3"]
    assert reasons["f.csv#row=4"] == "qty is not an integer (value: x)"  # not also "not_nullable"
    assert "str_matches" in reasons["f.csv#row=5"]
    assert "multiple_fields_uniqueness" in reasons["f.csv#row=6"]  # duplicate version L4
    assert "not_nullable" in reasons["f.csv#row=7"]


def test_missing_column_blocks_the_batch_and_names_it():
    with pytest.raises(QualityGateError, match=r"columns \['qty'\].*missing"):
        type_batch(_raw().drop("qty"), CONTRACT, where="bronze.erp__lines ingest_date=2024-01-01")


def test_typed_values_keep_their_types():
    typed, _ = type_batch(_raw().head(1), CONTRACT, where="t")
    assert typed.schema["qty"] == pl.Int64
    assert typed["updated_at"][0] == datetime(2024, 1, 1, 10)


def test_a_cross_field_rule_quarantines_the_rows_it_fails_naming_its_columns():
    from lakehouse.config import RowRule

    contract = CONTRACT.model_copy(update={
        "columns": [*CONTRACT.columns, ColumnContract(name="shipped_at", type="datetime")],
        "rules": [RowRule(name="ships_after_update", expr="shipped_at >= updated_at")]})
    raw = _raw().head(2).with_columns(qty=pl.lit("2"), shipped_at=pl.Series(["2024-01-02 00:00:00", "2023-12-31 00:00:00"]))
    typed, parse_failures = type_batch(raw, contract, where="t")
    valid, failed = split_valid(typed, parse_failures, contract)
    assert valid["line_id"].to_list() == ["L1"]
    assert failed.select("rule", "column").to_dicts() == [{"rule": "ships_after_update",
                                                           "column": "updated_at,shipped_at"}]
    # the values the rule read, to see why, and nothing else (no other column, no lineage)
    assert json.loads(failed["offending_value"][0]) == {"updated_at": "2024-01-01 10:00:00",
                                                        "shipped_at": "2023-12-31 00:00:00"}


def test_a_rule_that_reads_no_column_or_is_not_sql_is_refused():
    from lakehouse.config import ConfigError, RowRule
    from lakehouse.contracts import pandera_schema

    with pytest.raises(ValueError, match="reads none of the contract's columns"):
        CONTRACT.model_copy(update={"rules": [RowRule(name="r", expr="1 = 1")]}).model_validate(
            CONTRACT.model_dump() | {"rules": [{"name": "r", "expr": "1 = 1"}]})
    broken = EntityContract.model_validate(CONTRACT.model_dump() | {"rules": [{"name": "r", "expr": "qty >>= ("}]})
    with pytest.raises(ConfigError, match="'r'.*not a Polars SQL expression"):
        pandera_schema(broken)


def test_exact_copies_name_every_repeat_of_a_raw_row_and_its_first():
    from lakehouse.silver import exact_copies

    hashes = ["a", "b", "a", None, None, "a", "c", "b"]
    got = exact_copies(pl.LazyFrame({"_record_hash": hashes}))
    assert sorted(got.rows()) == [(2, 0), (5, 0), (7, 1)]  # nulls (no hash) are never copies
    assert exact_copies(pl.LazyFrame({"x": [1, 1]})).is_empty()


def test_copies_and_duplicate_versions_searched_bucket_by_bucket_equal_one_search():
    """A large batch is searched a hash bucket of the key per pass (bounded memory): every
    bucket holds repeats here, so a pass lost or a key split across buckets changes the answer."""
    from polars.testing import assert_frame_equal

    from lakehouse.silver import duplicate_versions, exact_copies

    hashes = pl.LazyFrame({"_record_hash": [str(i % 97) for i in range(1_000)] + [None] * 5})
    once = exact_copies(hashes)
    assert once.height == 1_000 - 97 and once["_global"].is_sorted()
    lines = pl.LazyFrame({"line_id": [f"L{i % 89}" for i in range(500)],
                          "updated_at": ["2024-01-01 10:00:00"] * 500})
    dup_once = duplicate_versions(lines, CONTRACT).sort("line_id")
    assert dup_once.height == 89
    for passes in (2, 7):
        assert_frame_equal(exact_copies(hashes, passes=passes), once)
        assert_frame_equal(duplicate_versions(lines, CONTRACT, passes=passes).sort("line_id"), dup_once)
