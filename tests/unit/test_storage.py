from pathlib import Path

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


def _days(values: dict[str, list[int]]) -> pl.LazyFrame:
    from datetime import date

    rows = [(date.fromisoformat(d), v) for d, vs in values.items() for v in vs]
    return pl.LazyFrame(rows, schema={"day": pl.Date, "v": pl.Int64}, orient="row")


def _files(tmp_path) -> dict[str, frozenset[str]]:
    """partition -> the data files of the current Delta version (never rewritten in place)."""
    out: dict[str, set[str]] = {}
    for f in storage.data_files(tmp_path, "gold", "fct_x"):
        out.setdefault(Path(f).parent.name, set()).add(str(f))
    return {k: frozenset(v) for k, v in out.items()}


def test_partitioned_publish_commits_only_changed_partitions_at_once(tmp_path):
    from lakehouse import delta

    root = storage.table_dir(tmp_path, "gold", "fct_x")
    first = storage.publish_partitioned(_days({"2026-01-01": [1], "2026-01-02": [2], "2026-01-03": [3]}),
                                        tmp_path, "gold", "fct_x", "day")
    assert first == {"written": 3, "unchanged": 0, "retired": 0}
    before, version = _files(tmp_path), delta.version(root)
    # a late row for 01-01, and 01-03 no longer has any rows
    second = storage.publish_partitioned(_days({"2026-01-01": [1, 9], "2026-01-02": [2]}),
                                         tmp_path, "gold", "fct_x", "day")
    assert second == {"written": 1, "unchanged": 1, "retired": 1}
    after = _files(tmp_path)
    assert after["day=2026-01-02"] == before["day=2026-01-02"]  # untouched: same file
    assert after["day=2026-01-01"].isdisjoint(before["day=2026-01-01"])
    assert "day=2026-01-03" not in after
    assert delta.version(root) == version + 1  # the rewrite and the removal: one commit
    got = storage.scan(tmp_path, "gold", "fct_x").sort("v").collect()
    assert got["v"].to_list() == [1, 2, 9]
    assert delta.scan(root, version=version).select("v").collect()["v"].sort().to_list() == [1, 2, 3]


def test_a_rerun_with_the_same_content_commits_nothing(tmp_path):
    from lakehouse import delta

    frame = _days({"2026-01-01": [1, 2], "2026-01-02": [3]})
    storage.publish_partitioned(frame, tmp_path, "gold", "fct_x", "day")
    before, version = _files(tmp_path), delta.version(storage.table_dir(tmp_path, "gold", "fct_x"))
    again = storage.publish_partitioned(frame.reverse(), tmp_path, "gold", "fct_x", "day")  # any row order
    assert again == {"written": 0, "unchanged": 2, "retired": 0}
    assert _files(tmp_path) == before
    assert delta.version(storage.table_dir(tmp_path, "gold", "fct_x")) == version
    assert not list((tmp_path / "_state" / "_staging").glob("*"))  # staging cleaned up


def test_a_rerun_of_an_aggregate_with_a_count_commits_nothing(tmp_path):
    """``pl.len()`` is unsigned; Delta stores it signed. Compared by their own types, every
    partition of such an aggregate differed from itself and was rewritten on every run."""
    from lakehouse import delta

    frame = _days({"2026-01-01": [1, 2], "2026-01-02": [3]}).group_by("day").agg(lines=pl.len())
    storage.publish_partitioned(frame, tmp_path, "gold", "agg_x", "day")
    version = delta.version(storage.table_dir(tmp_path, "gold", "agg_x"))
    assert storage.publish_partitioned(frame, tmp_path, "gold", "agg_x", "day") == {
        "written": 0, "unchanged": 2, "retired": 0}
    assert delta.version(storage.table_dir(tmp_path, "gold", "agg_x")) == version


def test_an_empty_build_removes_every_partition_in_one_commit(tmp_path):
    storage.publish_partitioned(_days({"2026-01-01": [1], "2026-01-02": [2]}), tmp_path, "gold", "fct_x", "day")
    empty = storage.publish_partitioned(_days({}), tmp_path, "gold", "fct_x", "day", sort_by=["v"])
    assert empty == {"written": 0, "unchanged": 0, "retired": 2}
    assert storage.row_count(tmp_path, "gold", "fct_x") == 0
    # and an empty first build creates the (rowless) table
    assert storage.publish_partitioned(_days({}), tmp_path, "gold", "fct_y", "day") == \
        {"written": 0, "unchanged": 0, "retired": 0}
    assert storage.row_count(tmp_path, "gold", "fct_y") == 0


def test_partitions_are_sorted_within_by_sort_by(tmp_path):
    frame = _days({"2026-01-01": [3, 1, 2], "2026-01-02": [9, 8]})
    storage.publish_partitioned(frame, tmp_path, "gold", "fct_x", "day", sort_by=["v"])
    for f in storage.data_files(tmp_path, "gold", "fct_x"):
        values = pl.read_parquet(f)["v"].to_list()
        assert values == sorted(values)


def test_retired_file_stays_readable_to_an_open_reader_until_vacuumed(tmp_path):
    path = storage.publish(pl.DataFrame({"v": [1, 2, 3]}), tmp_path, "bronze", "t", {"ingest_date": "2026-01-01"})
    reader = open(path, "rb")  # a query that already opened the file
    retired = storage.retire(path)
    assert storage.scan(tmp_path, "bronze", "t", missing_ok=True) is None  # new readers no longer see it
    assert pl.read_parquet(reader)["v"].to_list() == [1, 2, 3]
    reader.close()
    assert storage.vacuum(tmp_path, grace_hours=1) == []  # too young: a long query may still read it
    assert retired.exists()
    assert storage.vacuum(tmp_path, grace_hours=0) == [retired]
    assert not retired.exists() and not retired.parent.exists()


def test_vacuum_removes_abandoned_temp_files_only_after_grace(tmp_path):
    import os
    import time

    storage.publish(pl.DataFrame({"v": [1]}), tmp_path, "bronze", "t")
    tmp = tmp_path / "bronze" / "t" / ".data.parquet.dead.tmp"
    tmp.write_bytes(b"half written")
    assert storage.vacuum(tmp_path, grace_hours=1) == []
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    assert storage.vacuum(tmp_path, grace_hours=1) == [tmp]
    assert storage.exists(tmp_path, "bronze", "t")


def test_a_lake_root_with_layer_names_one_bucket_or_folder_per_layer(tmp_path):
    lake = "s3://acme-{layer}/retail"
    assert storage.table_dir(lake, "bronze", "erp__orders") == "s3://acme-bronze/retail/erp__orders"
    assert storage.partition_dir(lake, "gold", "fct_x", {"d": "2026-01-01"}) == \
        "s3://acme-gold/retail/fct_x/d=2026-01-01"
    assert storage.state_dir(lake) == "s3://acme-gold/retail/_state"
    assert storage.table_dir("s3://acme/lake/", "silver", "t") == "s3://acme/lake/silver/t"
    assert storage.is_remote("gs://b/x") and storage.is_remote("abfs://c@acct.dfs.core.windows.net/x")
    assert not storage.is_remote(tmp_path) and not storage.is_remote(str(tmp_path))
    # the same template works on local disk: every layer is its own folder
    local = f"{tmp_path}/lake-{{layer}}"
    storage.publish(pl.DataFrame({"v": [1]}), local, "bronze", "t")
    assert (tmp_path / "lake-bronze" / "t" / storage.DATA_FILE).exists()
    assert storage.tables(local, "bronze") == ["t"] and storage.row_count(local, "bronze", "t") == 1


def test_a_file_from_another_file_system_is_copied_in_then_renamed(tmp_path, monkeypatch):
    import os

    src = tmp_path / "elsewhere.parquet"
    pl.DataFrame({"v": [1, 2]}).write_parquet(src)
    real_stat = os.stat
    # pretend the source sits on another device: a bare rename would raise EXDEV there
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: os.stat_result(
        (*real_stat(p, *a, **k)[:2], 4242, *real_stat(p, *a, **k)[3:])) if str(p) == str(src) else real_stat(p, *a, **k))
    target = storage.data_file(tmp_path / "lake", "gold", "t")
    storage.put_file(src, target)
    monkeypatch.undo()
    assert pl.read_parquet(target)["v"].to_list() == [1, 2]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_locks_live_where_every_worker_sees_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_LOCK_DIR", str(tmp_path / "shared-locks"))
    with storage.locked("s3://acme/lake", "gold"):
        assert list((tmp_path / "shared-locks").glob("*/gold.lock"))


def test_scans_pin_a_snapshot_reused_until_the_table_changes(tmp_path):
    storage.publish(pl.DataFrame({"v": [1]}), tmp_path, "bronze", "t", {"d": "2026-01-01"})
    snaps = tmp_path / "_state" / storage.SNAPSHOTS
    first = storage.scan(tmp_path, "bronze", "t")
    storage.scan(tmp_path, "bronze", "t")
    assert len(list(snaps.iterdir())) == 1  # unchanged table: the same snapshot again
    storage.publish(pl.DataFrame({"v": [2, 3]}), tmp_path, "bronze", "t", {"d": "2026-01-01"})
    assert first.collect()["v"].to_list() == [1]  # a scan made before keeps reading its files
    assert storage.scan(tmp_path, "bronze", "t").collect()["v"].to_list() == [2, 3]
    assert len(list(snaps.iterdir())) == 2
    storage.vacuum(tmp_path, grace_hours=0)
    assert list(snaps.iterdir()) == []
