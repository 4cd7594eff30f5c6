"""Soft deletes become versions; reappearance opens a new one; order never matters."""

from datetime import date, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse.config import EntityContract
from lakehouse.silver import history


def _contract(**deletes) -> EntityContract:
    cols = [{"name": "id", "type": "string", "nullable": False},
            {"name": "price", "type": "float64"},
            {"name": "updated_at", "type": "datetime", "nullable": False}]
    if "flag_column" in deletes:
        cols.append({"name": "gone", "type": "bool"})
    return EntityContract(entity="things", source="src", primary_key=["id"], updated_at="updated_at",
                          history="scd2", deletes=deletes, columns=cols)


def _batches(rows: list[tuple]) -> pl.LazyFrame:
    """(ingest_date, id, price, updated_at[, gone]) tuples -> staged rows."""
    names = ["ingest_date", "id", "price", "updated_at", "gone"][: len(rows[0])]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    return frame.with_columns(_source_pointer=pl.format("row {}", pl.int_range(pl.len()))).lazy()


def test_flagged_delete_closes_the_version_and_reappearance_opens_one():
    rows = [(date(2026, 1, 1), "a", 1.0, datetime(2026, 1, 1, 9), False),
            (date(2026, 1, 3), "a", 1.0, datetime(2026, 1, 3, 9), True),
            (date(2026, 1, 6), "a", 1.0, datetime(2026, 1, 6, 9), False)]
    out = history(_batches(rows), _contract(flag_column="gone")).collect()
    assert out["is_deleted"].to_list() == [False, True, False]
    assert out["valid_to"].to_list() == [datetime(2026, 1, 3, 9), datetime(2026, 1, 6, 9), None]
    assert out["is_current"].to_list() == [False, False, True]


SNAPSHOTS = [
    # day 1: a and b; day 2: b vanished; day 3: b back unchanged; day 4: b gone again
    (date(2026, 1, 1), "a", 1.0, datetime(2025, 12, 1)),
    (date(2026, 1, 1), "b", 5.0, datetime(2025, 12, 1)),
    (date(2026, 1, 2), "a", 1.0, datetime(2025, 12, 1)),
    (date(2026, 1, 3), "a", 2.0, datetime(2026, 1, 3, 8)),
    (date(2026, 1, 3), "b", 5.0, datetime(2025, 12, 1)),
    (date(2026, 1, 4), "a", 2.0, datetime(2026, 1, 3, 8)),
]


def test_key_missing_from_a_snapshot_is_a_delete_and_its_return_a_new_version():
    out = history(_batches(SNAPSHOTS), _contract(missing_from_snapshot=True)).collect()
    b = out.filter(pl.col("id") == "b")
    assert b["is_deleted"].to_list() == [False, True, False, True]
    # known deleted at day 2's snapshot (end of day 2), back at day 3's, gone again at day 4's
    assert b["valid_from"].to_list() == [datetime(2025, 12, 1), datetime(2026, 1, 3),
                                         datetime(2026, 1, 4), datetime(2026, 1, 5)]
    assert b["is_current"].to_list() == [False, False, False, True]
    a = out.filter(pl.col("id") == "a")
    assert a["price"].to_list() == [1.0, 2.0] and not a["is_deleted"].any()


def test_snapshot_deletes_use_the_business_day_of_the_timezone():
    out = history(_batches(SNAPSHOTS), _contract(missing_from_snapshot=True), tz="Europe/Paris").collect()
    tomb = out.filter(pl.col("id") == "b", pl.col("is_deleted"))
    assert tomb["valid_from"].to_list() == [datetime(2026, 1, 2, 23), datetime(2026, 1, 4, 23)]


@pytest.mark.parametrize("seed", range(5))
def test_snapshot_history_does_not_depend_on_batch_order(seed):
    contract = _contract(missing_from_snapshot=True)
    expected = history(_batches(SNAPSHOTS), contract).collect()
    shuffled = _batches(SNAPSHOTS).collect().sample(fraction=1.0, shuffle=True, seed=seed).lazy()
    assert_frame_equal(history(shuffled, contract).collect(), expected)


def test_deletes_config_needs_exactly_one_mode():
    with pytest.raises(ValueError, match="exactly one"):
        _contract()
    with pytest.raises(ValueError, match="bool column"):
        EntityContract(entity="t", source="s", primary_key=["id"], deletes={"flag_column": "nope"},
                       columns=[{"name": "id", "type": "string"}])
