import polars as pl
import pytest

from lakehouse import storage


def test_publish_replaces_a_partition_whole(tmp_path):
    part = {"ingest_date": "2024-01-01"}
    storage.publish(pl.DataFrame({"a": [1, 2, 3]}), tmp_path, "bronze", "src__t", part)
    storage.publish(pl.LazyFrame({"a": [9]}), tmp_path, "bronze", "src__t", part)
    files = list((tmp_path / "bronze" / "src__t").rglob("*"))
    assert [f.name for f in files if f.is_file()] == ["data.parquet"]
    assert storage.scan(tmp_path, "bronze", "src__t").collect()["a"].to_list() == [9]


@pytest.mark.parametrize("value", ["../..", "a/b", "x=y", "%2e", "a\x00b", "z" * 200, ".."])
def test_partition_values_cannot_escape_the_table(tmp_path, value):
    with pytest.raises(storage.StorageError):
        storage.partition_dir(tmp_path, "bronze", "t", {"ingest_date": value})


@pytest.mark.parametrize("name", ["../x", "a;drop", 'q"', "A"])
def test_table_names_are_plain_identifiers(tmp_path, name):
    with pytest.raises(storage.StorageError):
        storage.table_dir(tmp_path, "gold", name)


def test_content_hash_ignores_row_order_and_wall_clock(tmp_path):
    df = pl.DataFrame({"k": [1, 2, None], "v": ["x", "y", "y"], "_ingested_at": [1, 2, 3]})
    storage.publish(df, tmp_path, "silver", "a")
    storage.publish(df.reverse().with_columns(_ingested_at=pl.lit(7)), tmp_path, "silver", "b")
    storage.publish(df.head(2), tmp_path, "silver", "c")
    h = {t: storage.content_hash(tmp_path, "silver", t) for t in "abc"}
    assert h["a"] == h["b"] != h["c"]
