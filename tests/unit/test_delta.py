"""Delta tables through ``lakehouse.delta`` and the storage read path (ADR 0019)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date, timedelta

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse import delta, storage

D1, D2 = date(2026, 11, 1), date(2026, 11, 2)
SCOPE = "retail_daily.silver_orders.scheduled__2026-11-01.-1"


def _rows(day: date, dataset: str, values: list[int | None]) -> pl.DataFrame:
    return pl.DataFrame({"check": [f"c{i}" for i in range(len(values))], "failing_count": values,
                         "business_date": [day] * len(values), "dataset": [dataset] * len(values)},
                        schema={"check": pl.String, "failing_count": pl.Int64, "business_date": pl.Date,
                                "dataset": pl.String})


def _write(lake, day: date, dataset: str, values: list[int | None]) -> int:
    return delta.replace_where(_rows(day, dataset, values), storage.table_dir(lake, "gold", "checks"),
                               {"business_date": day, "dataset": dataset}, partition_by=["business_date", "dataset"])


def test_replacing_a_partition_leaves_the_others_and_keeps_old_versions_readable(tmp_path):
    lake = tmp_path / "lake"
    _write(lake, D1, "silver.orders", [1, None])
    _write(lake, D1, "silver.o'dd name", [7])  # quoting in the predicate
    first = delta.version(storage.table_dir(lake, "gold", "checks"))
    _write(lake, D1, "silver.orders", [3])  # a rerun of one batch replaces its rows only
    _write(lake, D2, "silver.orders", [])  # an empty batch still has a (rowless) commit
    got = storage.scan(lake, "gold", "checks").sort("dataset", "check").collect()
    assert got.select("dataset", "failing_count").rows() == [("silver.o'dd name", 7), ("silver.orders", 3)]
    assert storage.partitions(lake, "gold", "checks") == [
        {"business_date": "2026-11-01", "dataset": "silver.o'dd name"},
        {"business_date": "2026-11-01", "dataset": "silver.orders"}]
    assert storage.exists(lake, "gold", "checks", {"business_date": "2026-11-01", "dataset": "silver.orders"})
    assert not storage.exists(lake, "gold", "checks", {"business_date": "2026-11-02", "dataset": "silver.orders"})
    # time travel: the version before the rerun still has its rows, until vacuum removes them
    root = storage.table_dir(lake, "gold", "checks")
    old = delta.scan(root, version=first).filter(pl.col("dataset") == "silver.orders").collect()
    assert sorted(old["failing_count"].to_list(), key=str) == [1, None]
    assert storage.vacuum(lake, grace_hours=1) == []  # younger than the grace period: kept
    assert delta.vacuum(root, 0)  # the replaced file goes once no retained version needs it
    with pytest.raises(Exception):  # noqa: B017 - delta-rs raises its own error types
        delta.scan(root, version=first).collect()


def test_the_catalog_view_over_a_versions_files_equals_the_delta_scan(tmp_path):
    lake = tmp_path / "lake"
    for day in (D1, D2):
        for name in ("silver.orders", "silver.order lines"):
            _write(lake, day, name, [1, 2, None])
    source = storage.table_source(lake, "gold", "checks")
    view = duckdb.sql(f"SELECT * FROM read_parquet({source}, hive_partitioning = true)").pl()
    scanned = storage.scan(lake, "gold", "checks").collect()
    key = ["business_date", "dataset", "check"]
    assert_frame_equal(view.select(scanned.columns).sort(key), scanned.sort(key))
    # data files are never rewritten: a later commit leaves this version's list readable
    _write(lake, D1, "silver.orders", [9])
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet({source}, hive_partitioning = true)").fetchall() == [(12,)]


def test_optimize_compacts_and_keeps_the_content(tmp_path):
    lake = tmp_path / "lake"
    for i in range(6):
        _write(lake, D1, f"silver.e{i}", [i])
        _write(lake, D1, f"silver.e{i}", [i, i])  # reruns leave replaced files behind
    root = storage.table_dir(lake, "gold", "checks")
    before = storage.content_hash(lake, "gold", "checks")
    metrics = delta.optimize(root)
    assert metrics["numFilesAdded"] <= metrics["numFilesRemoved"]
    assert storage.content_hash(lake, "gold", "checks") == before


def test_a_superseded_attempt_commits_nothing(tmp_path):
    lake = tmp_path / "lake"
    storage.claim_attempt(lake, SCOPE, 1, "run-start-1")
    try:
        _write(lake, D1, "silver.orders", [1])
        script = textwrap.dedent(f"""
            from datetime import date
            from pathlib import Path
            from lakehouse import storage
            storage.claim_attempt(Path({str(lake)!r}), {SCOPE!r}, 2, "run-start-1")
        """)
        subprocess.run([sys.executable, "-c", script], check=True)  # try 2 claims the task
        with pytest.raises(storage.StaleAttempt):
            _write(lake, D1, "silver.orders", [666])
    finally:
        storage.release_attempt()
    assert storage.scan(lake, "gold", "checks").collect()["failing_count"].to_list() == [1]


def test_only_tables_with_many_small_files_are_compacted(tmp_path, monkeypatch):
    """The daily compaction step leaves a table alone until it gathered SMALL_FILES small files
    that can be merged (in one partition), then compacts it once: same content, fewer files.
    A partitioned table with one small file per partition has nothing to merge."""
    lake = tmp_path / "lake"
    monkeypatch.setattr(storage.maintenance, "SMALL_FILES", 5)
    for i in range(6):
        _write(lake, D1 + timedelta(days=i), "silver.e", [i])  # one file in each of 6 partitions
    root = storage.table_dir(lake, "silver", "items")
    delta.replace_all(pl.DataFrame({"k": [0], "v": [0]}), root)
    for i in range(1, 4):  # each merge of new keys adds a file: 4 files, under the threshold
        delta.replace_keys(pl.DataFrame({"k": [i], "v": [i]}), root, ["k"], pl.DataFrame({"k": [i]}))
    assert storage.compact_small_files(lake) == {}
    delta.replace_keys(pl.DataFrame({"k": [4], "v": [4]}), root, ["k"], pl.DataFrame({"k": [4]}))
    before, files = storage.content_hash(lake, "silver", "items"), len(delta.files(root))
    done = storage.compact_small_files(lake)
    assert list(done) == ["silver.items"] and len(delta.files(root)) < files == 5
    assert storage.content_hash(lake, "silver", "items") == before
    assert storage.compact_small_files(lake) == {}  # one file now: nothing to do


def _sales(rows: list[tuple[date, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"day": pl.Date, "sku": pl.String, "units": pl.Int64}, orient="row")


def _net(where, version) -> list[tuple]:
    return sorted(delta.changes_since(where, version).collect().rows())


@pytest.mark.parametrize("spill_rows", [delta.FEED_SPILL_ROWS, 1])
def test_changes_since_gives_the_net_change_of_every_kind_of_commit(tmp_path, monkeypatch, spill_rows):
    """The feed is spilled to files (a row in each with ``spill_rows`` 1) and netted by the rows'
    hashes: a row added in one commit and removed in another cancels across the files."""
    monkeypatch.setattr(delta, "FEED_SPILL_ROWS", spill_rows)
    where = storage.table_dir(tmp_path / "lake", "gold", "sales")
    assert delta.changes_since(where, 0) is None  # no table yet
    delta.replace_changed_partitions(_sales([(D1, "a", 1), (D1, "b", 2)]).lazy(), where, "day")
    v0 = delta.version(where)
    assert delta.changes_since(where, None) is None  # nothing consumed yet: compute in full
    assert _net(where, v0) == []  # consumed the newest version: nothing changed
    # a partition rewritten with one row changed, another added: only the real differences
    delta.replace_changed_partitions(_sales([(D1, "a", 1), (D1, "b", 5), (D2, "a", 3)]).lazy(), where, "day")
    assert _net(where, v0) == [(D1, "b", 2, -1), (D1, "b", 5, 1), (D2, "a", 3, 1)]
    v1 = delta.version(where)
    # a whole-table overwrite with the same content but one removed partition: its delete alone
    delta.replace_all(_sales([(D1, "a", 1), (D1, "b", 5)]), where)
    assert _net(where, v1) == [(D2, "a", 3, -1)]
    # across several commits the changes net out: D2's row came and went
    assert _net(where, v0) == [(D1, "b", 2, -1), (D1, "b", 5, 1)]
    # a change seen through fewer columns: a new units value of a kept (day, sku) is no change of it
    assert delta.net(delta.changes_since(where, v0), ["day", "sku"]).collect().is_empty()
    spilled = list(delta._spilled)
    assert spilled and all(p.exists() for p in spilled)
    delta.release_change_feeds()  # the spilled files go once the frames are computed
    assert not any(p.exists() for p in spilled)


def test_changes_since_refuses_when_the_feed_cannot_be_trusted(tmp_path):
    where = storage.table_dir(tmp_path / "lake", "gold", "sales")
    delta.replace_all(_sales([(D1, "a", 1)]), where)
    v0 = delta.version(where)
    delta.replace_all(_sales([(D1, "a", 1)]).with_columns(extra=pl.lit("x")), where)  # schema changed
    assert delta.changes_since(where, v0) is None
    assert delta.changes_since(where, delta.version(where) + 5) is None  # a version from another table


def test_a_partial_rewrite_touches_only_the_named_partitions(tmp_path):
    where = storage.table_dir(tmp_path / "lake", "gold", "sales")
    delta.replace_changed_partitions(_sales([(D1, "a", 1), (D2, "a", 2)]).lazy(), where, "day")
    # the frame holds D2's new content only; D1 is neither read nor removed
    counts = delta.replace_changed_partitions(_sales([(D2, "a", 9)]).lazy(), where, "day", only=[D2])
    assert counts == {"written": 1, "unchanged": 0, "retired": 0}
    assert sorted(delta.scan(where).collect().rows()) == [(D1, "a", 1), (D2, "a", 9)]
    # a named partition the frame lacks is removed
    delta.replace_changed_partitions(_sales([]).lazy(), where, "day", only=[D2])
    assert sorted(delta.scan(where).collect().rows()) == [(D1, "a", 1)]
    with pytest.raises(ValueError, match="schema"):
        delta.replace_changed_partitions(_sales([(D2, "a", 1)]).lazy().with_columns(x=pl.lit(1)), where, "day",
                                         only=[D2])


def test_compaction_and_vacuum_are_seen_right_by_the_change_feed(tmp_path):
    where = storage.table_dir(tmp_path / "lake", "gold", "sales")
    delta.replace_all(_sales([(D1, "s0", 0)]), where)
    for i in (1, 2):  # appends: three small files
        _sales([(D1, f"s{i}", i)]).write_delta(delta.uri(where), mode="append")
    before = delta.version(where)
    delta.optimize(where)
    assert delta.version(where) > before
    assert _net(where, before) == []  # a compaction changes no row
    assert _net(where, 0) == [(D1, "s1", 1, 1), (D1, "s2", 2, 1)]
    delta.vacuum(where, retention_hours=0)  # the feed's files of old commits are gone
    assert delta.changes_since(where, 0) is None


def test_the_listed_version_is_the_tables_and_checkpoints_bound_the_log(tmp_path):
    from deltalake import DeltaTable

    lake = tmp_path / "lake"
    root = storage.table_dir(lake, "gold", "checks")
    for i in range(23):
        assert _write(lake, D1 + timedelta(days=i % 3), "silver.orders", [i]) == delta.version(root)
        assert delta.version(root) == DeltaTable(str(root)).version() == i
    logs = sorted(p.name for p in (root / "_delta_log").iterdir())
    # a checkpoint every 10 commits: a reader replays at most 9 JSON commits after it
    assert [n for n in logs if n.endswith(".checkpoint.parquet")] == [
        f"{v:020d}.checkpoint.parquet" for v in (9, 19)]
    assert storage.scan(lake, "gold", "checks").collect()["failing_count"].sort().to_list() == [20, 21, 22]


def test_an_older_table_gets_the_properties_once_and_its_change_feed_reads_across(tmp_path):
    root = tmp_path / "old"
    pl.DataFrame({"k": [1], "v": ["a"]}).write_delta(
        root, delta_write_options={"configuration": {delta.CHANGE_FEED: "true"}})  # made before the interval
    assert delta.set_properties(root) is True and delta.set_properties(root) is False
    assert delta._table(root).metadata().configuration == delta.TABLE_PROPERTIES
    delta.replace_all(pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}), root)
    assert delta.changes_since(root, 0).collect().select("k", "v", delta.CHANGE).rows() == [(2, "b", 1)]


def test_a_table_kept_open_sees_other_writers_and_a_table_created_again_in_its_place(tmp_path):
    """``delta._table`` keeps tables open per thread and catches them up: a commit made by
    another process must be seen, and a table deleted and created again at the same path must
    be read afresh (caught up from the old log, it would list the old table's files)."""
    import shutil

    lake = tmp_path / "lake"
    root = storage.table_dir(lake, "gold", "checks")
    for i in range(3):
        _write(lake, D1 + timedelta(days=i), "silver.orders", [i])
    assert len(delta.files(root)) == 3 and delta._table(root) is delta._table(root)  # kept open
    # another process commits: the kept table catches up
    code = textwrap.dedent(f"""
        from datetime import date
        import polars as pl
        from deltalake import write_deltalake
        frame = pl.DataFrame({{"check": ["x"], "failing_count": [9], "business_date": [date(2026, 12, 1)],
                              "dataset": ["silver.orders"]}})
        write_deltalake({str(root)!r}, frame.to_arrow(), mode="append")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(delta.files(root)) == 4
    assert storage.scan(lake, "gold", "checks").select(pl.col("failing_count").sum()).collect().item() == 12
    # deleted and created again with a single version: never the old table's files or rows
    shutil.rmtree(root)
    _write(lake, D2, "silver.returns", [5])
    assert delta.version(root) == 0
    got = [f for f in delta.files(root)]
    assert len(got) == 1 and "silver.returns" in got[0]
    assert storage.scan(lake, "gold", "checks").collect()["failing_count"].to_list() == [5]


def test_a_kept_table_stays_kept_when_delta_cleans_up_its_oldest_log_entries(tmp_path):
    """Delta's expired-log cleanup deletes the log entries before a checkpoint (the first
    commit's among them). The table must stay open and current through it, and a table
    created again in its place must still be opened afresh: every commit listing a long
    ``_delta_log`` is what that cleanup saves (docs/benchmarks.md), and reopening the table
    on every use would give the saving back."""
    import shutil

    lake = tmp_path / "lake"
    root = storage.table_dir(lake, "gold", "checks")
    for i in range(12):  # a checkpoint at version 9
        _write(lake, D1 + timedelta(days=i), "silver.orders", [i])
    kept = delta._table(root)
    log = root / delta.LOG_DIR
    assert (log / f"{9:020d}.checkpoint.parquet").exists()
    for entry in log.glob("*.json"):  # what the cleanup leaves: the newest checkpoint onwards
        if int(entry.name[:20]) < 9:
            entry.unlink()
    assert not (log / f"{0:020d}.json").exists()
    assert delta._table(root) is kept and delta._table(root) is kept
    _write(lake, D2 + timedelta(days=30), "silver.orders", [100])
    assert delta._table(root) is kept and delta.version(root) == 12
    assert storage.scan(lake, "gold", "checks").select(pl.col("failing_count").sum()).collect().item() == 166
    # deleted and created again: a new table, whatever the old one's log held
    shutil.rmtree(root)
    _write(lake, D2, "silver.returns", [5])
    assert delta._table(root) is not kept and delta.version(root) == 0
    assert storage.scan(lake, "gold", "checks").collect()["failing_count"].to_list() == [5]


def test_a_daily_merge_rewrites_the_files_around_its_keys_not_everything_since_the_first_load(tmp_path,
                                                                                                 monkeypatch):
    """Silver's daily shape: each day brings new keys (inserted) and re-reads the two days
    before (held keys, merged). Every writer cuts files at the table's target size, so the
    merge rewrites the few files around the re-read keys and a day costs the same on day 12
    as on day 3. Without the target (delta-rs' 100 MB default) the inserted rows joined the
    rewritten file, and each day's merge copied every row written since the first load."""
    assert delta.TARGET_FILE_SIZE in delta.TABLE_PROPERTIES  # every table is created with it
    monkeypatch.setitem(delta.TABLE_PROPERTIES, delta.TARGET_FILE_SIZE, str(32 << 10))  # small days, small files
    per_day, root = 3_000, storage.table_dir(tmp_path / "lake", "silver", "lines")

    def day_rows(day: int, version: int) -> pl.DataFrame:
        return pl.DataFrame({"k": [f"L{day * per_day + i:09d}" for i in range(per_day)],
                             "v": [version] * per_day, "note": [f"line {i} of day {day}" for i in range(per_day)]})

    delta.replace_all(pl.concat([day_rows(d, 0) for d in range(5)]).sort("k"), root, target_file_size=32 << 10)
    copied = []
    for day in range(5, 17):
        batch = pl.concat([day_rows(d, day) for d in (day - 2, day - 1, day)])  # lookback: re-read 2 days
        metrics = delta.replace_keys(batch, root, ["k"], batch.select("k"))
        copied.append(metrics["num_target_rows_copied"])
    got = delta.scan(root).collect()
    assert got.height == 17 * per_day and got["k"].is_unique().all()
    assert got.filter(pl.col("k") == f"L{16 * per_day:09d}")["v"].item() == 16
    assert got.filter(pl.col("k") == f"L{13 * per_day:09d}")["v"].item() == 15  # its last re-read
    assert max(copied[-4:]) <= max(copied[:4]) + per_day // 2, copied  # flat, not a day's rows more each day


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import polars as pl
    from lakehouse import delta
    root, worker, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    time.sleep(max(0.0, start - time.time()))  # every racer's first write at the same moment
    for day in range(1, 6):
        delta.replace_where(pl.DataFrame({"v": [day] * 100}), root, {"entity": f"e{worker}", "day": f"2026-11-0{day}"},
                            partition_by=["entity", "day"])
""")


def test_writers_of_other_partitions_may_create_a_table_together(tmp_path):
    """Silver tasks create the shared quarantine and quality tables on a lake's first day, all at
    once. delta-rs refused some of their first commits and let another land as a second metadata
    change, failing a concurrent writer; tables are created under a lock, so all commit."""
    import time

    root = tmp_path / "lake" / "silver" / "shared"
    start = time.time() + 4  # past every racer's imports
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(root), str(w), str(start)],
                               stderr=subprocess.PIPE, text=True) for w in range(6)]
    errors = [err for p in racers if (err := p.communicate(timeout=120)[1]) and p.returncode]
    assert not errors, errors[0][-600:]
    got = delta.scan(root).group_by("entity").agg(pl.len(), pl.col("day").n_unique()).sort("entity").collect()
    assert got.rows() == [(f"e{w}", 500, 5) for w in range(6)]


def test_row_count_reads_the_logs_record_counts_and_counts_rows_where_a_file_has_none(tmp_path):
    import json

    lake = tmp_path / "lake"
    _write(lake, D1, "silver.orders", [1, 2, 3])
    _write(lake, D2, "silver.orders", [4, None])
    _write(lake, D1, "silver.orders", [5])  # replaces D1's three rows
    root = storage.table_dir(lake, "gold", "checks")
    assert delta.row_count(root) == storage.scan(lake, "gold", "checks").select(pl.len()).collect().item() == 3

    # a file written without statistics (e.g. by a writer that skips them) has no record count:
    # its rows are counted, not taken as none
    commit = root / "_delta_log" / f"{delta.version(root):020d}.json"
    actions = [json.loads(line) for line in commit.read_text().splitlines()]
    for action in actions:
        action.get("add", {}).pop("stats", None)
    commit.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    fresh = tmp_path / "copy"
    import shutil

    shutil.copytree(root, fresh)  # a path this process has not opened: no kept table
    assert delta.row_count(fresh) == 3


def test_the_daily_vacuum_reads_the_log_and_the_weekly_one_also_lists_every_file(tmp_path, monkeypatch):
    """A file the log removed goes at every vacuum; a file no commit named (a writer killed
    before its commit) only at a full one, which the daily retention runs on Sundays only:
    it lists every file of every Delta table (ADR 0032). Bronze's temp files go either way."""
    import os
    import shutil
    import time

    from lakehouse import retention
    from lakehouse.config import load_domain
    from tests.conftest import CONFIG_DIR

    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    cfg = load_domain(CONFIG_DIR)
    where = storage.table_dir(cfg.lake, "gold", "sales")
    delta.replace_all(_sales([(D1, "a", 1)]), where)
    first = set(delta.files(where))
    delta.replace_all(_sales([(D1, "a", 2)]), where)  # the log removes the first version's file
    orphan = where / "part-00000-killed-before-commit.parquet"
    shutil.copy(next(iter(first)).removeprefix("file://"), orphan)
    storage.publish(pl.DataFrame({"v": [1]}), cfg.lake, "bronze", "t")
    tmp = storage.table_dir(cfg.lake, "bronze", "t") / ".data.parquet.dead.tmp"
    tmp.write_bytes(b"half written")
    old = time.time() - 7200
    for f in (orphan, tmp):
        os.utime(f, (old, old))
    cfg = cfg.model_copy(update={"retention": cfg.retention.model_copy(update={"grace_hours": 0})})

    monday, sunday = date(2026, 11, 2), date(2026, 11, 8)
    assert retention.apply_retention(cfg, monday) == {"retired": 0, "deleted": 2, "full_vacuum": False}
    assert not tmp.exists() and orphan.exists()  # the log's removal and bronze's temp file went
    assert not any(os.path.exists(f.removeprefix("file://")) for f in first)
    assert sorted(delta.scan(where).collect().rows()) == [(D1, "a", 2)]
    # the count is of files this run deleted: delta-rs names the first version's file again
    assert retention.apply_retention(cfg, sunday) == {"retired": 0, "deleted": 1, "full_vacuum": True}
    assert not orphan.exists()
    assert sorted(delta.scan(where).collect().rows()) == [(D1, "a", 2)]
    assert retention.apply_retention(cfg, sunday)["deleted"] == 0


@pytest.mark.parametrize("key", [["k"], ["k", "n"]])
def test_many_keys_are_matched_by_range_and_join_as_few_are_by_list(tmp_path, monkeypatch, key):
    """Above ``KEY_LIST_MAX`` keys the scan is pruned by their range only (a literal list of a
    month's 5.4 M keys cost more to check than to read) and matched by a semi-join: the same
    rows as the list gives, nulls matching nulls, keys outside the table ignored."""
    where = tmp_path / "t"
    for part in range(4):  # four files, each its own key range
        rows = [(f"k{part}{i}", i % 2) for i in range(5)] + ([(None, part)] if part == 1 else [])
        pl.DataFrame(rows, schema={"k": pl.String, "n": pl.Int64}, orient="row").write_delta(
            where, mode="append")
    table = delta.scan(where)
    keys = pl.DataFrame([("k10", 0), ("k12", 0), ("k31", 1), (None, 1), ("k99", 0), ("k13", 0)],
                        schema={"k": pl.String, "n": pl.Int64}, orient="row").select(key).unique()

    def matched() -> list:
        return sorted(delta.with_keys(table, key, keys).collect().rows(), key=str)

    by_list = matched()
    monkeypatch.setattr(delta, "KEY_LIST_MAX", 2)
    assert matched() == by_list
    expected = {("k10", 0), ("k12", 0), ("k31", 1), (None, 1)} | ({("k13", 1)} if key == ["k"] else set())
    assert set(by_list) == expected
