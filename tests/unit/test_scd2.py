from datetime import datetime

import polars as pl
from polars.testing import assert_frame_equal

from lakehouse.scd2 import latest, scd2


def _changes() -> pl.LazyFrame:
    return pl.LazyFrame({
        "id": ["a", "a", "a", "b", None],
        "price": [1.0, 1.0, 2.0, 5.0, 9.0],
        "updated_at": [datetime(2024, 1, 1), datetime(2024, 1, 2), datetime(2024, 1, 3),
                       datetime(2024, 1, 1), datetime(2024, 1, 1)],
    })


def test_scd2_opens_versions_only_on_real_change_and_closes_them():
    out = scd2(_changes().filter(pl.col("id").is_not_null()), key=["id"], changed_at="updated_at",
               tracked=["price"]).collect()
    expected = pl.DataFrame({
        "id": ["a", "a", "b"], "price": [1.0, 2.0, 5.0],
        "updated_at": [datetime(2024, 1, 1), datetime(2024, 1, 3), datetime(2024, 1, 1)],
        "valid_from": [datetime(2024, 1, 1), datetime(2024, 1, 3), datetime(2024, 1, 1)],
        "valid_to": [datetime(2024, 1, 3), None, None],
        "is_current": [False, True, True],
        "version": pl.Series([1, 2, 1], dtype=pl.Int32),
    })
    assert_frame_equal(out, expected)


def test_scd2_is_independent_of_input_order():
    frame = _changes().collect()
    a = scd2(frame.lazy(), key=["id"], changed_at="updated_at", tracked=["price"]).collect()
    b = scd2(frame.reverse().lazy(), key=["id"], changed_at="updated_at", tracked=["price"]).collect()
    assert_frame_equal(a, b)


def test_latest_keeps_newest_version_per_key():
    out = latest(_changes(), key=["id"], order_by=["updated_at"]).collect().sort("id", nulls_last=True)
    assert out["price"].to_list() == [2.0, 5.0, 9.0]


def test_type1_columns_overwrite_without_opening_versions():
    changes = pl.LazyFrame({
        "id": ["a", "a", "a"],
        "price": [1.0, 1.0, 2.0],
        "name": ["old", "renamed", "renamed again"],
        "updated_at": [datetime(2024, 1, 1), datetime(2024, 1, 2), datetime(2024, 1, 3)],
    })
    out = scd2(changes, key=["id"], changed_at="updated_at", tracked=["price"], overwrite=["name"]).collect()
    assert out["price"].to_list() == [1.0, 2.0]  # the rename on 01-02 opened no version
    assert out["name"].to_list() == ["renamed again", "renamed again"]
