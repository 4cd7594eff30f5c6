"""Property: the incremental silver build (merge of the keys a batch touched) equals a full
rebuild from every staged batch, whatever the batches do (hypothesis).

Random streams of versions over a few keys, cut into dated batches, are processed in a
random order; some batches are rerun with different content (a corrected extract replaces
the day), versions repeat across batches, batches disagree on a version (refused as a
conflict), keys are deleted (flag) and reappear. After every step the incrementally built
table must hash equal to ``silver.build`` from scratch on the same staged batches, and so
must the refused conflicts. SCD2 and latest-version tables, with a flag for deletes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse import delta, silver, storage
from lakehouse.config import DomainConfig

T0 = datetime(2024, 1, 1)


def _contract(history: str) -> dict:
    return {
        "entity": "items", "source": "src", "primary_key": ["item_id"], "updated_at": "updated_at",
        "history": history, "max_quarantine_rate": 1.0, "deletes": {"flag_column": "is_deleted"},
        "columns": [
            {"name": "item_id", "type": "string", "nullable": False},
            {"name": "price", "type": "float64", "nullable": False, "ge": 0},
            {"name": "is_deleted", "type": "bool", "nullable": True},
            {"name": "updated_at", "type": "datetime", "nullable": False},
        ],
    }


def _cfg(lake: Path, history: str) -> DomainConfig:
    return DomainConfig.model_validate({
        "name": "prop", "start_date": "2024-01-01", "lake_root": str(lake), "catalog_path": str(lake / "c.duckdb"),
        "sources": [], "contracts": [_contract(history)], "gold": [],
    })


# (key, hour, price, deleted, batch); hours collide often, so versions repeat and conflict
versions = st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 12),
                     st.sampled_from([1.0, 2.0, 3.0]), st.booleans(), st.integers(0, 4))


def _batch(rows: list[tuple], b: int, tag: str) -> pl.DataFrame:
    frame = pl.DataFrame(
        [{"item_id": k, "updated_at": T0 + timedelta(hours=h), "price": p, "is_deleted": d}
         for k, h, p, d, _ in rows],
        schema={"item_id": pl.String, "updated_at": pl.Datetime("us"), "price": pl.Float64,
                "is_deleted": pl.Boolean})
    return frame.with_columns(_source_pointer=pl.format("{}{}#row={}", pl.lit(tag), pl.lit(b), pl.int_range(pl.len())),
                              # as bronze computes it: a hash of the raw row's content
                              _record_hash=pl.struct("item_id", "updated_at", "price", "is_deleted")
                              .hash().cast(pl.String), _ingested_at=pl.lit(T0))


def _stage(cfg: DomainConfig, lake: Path, frame: pl.DataFrame, b: int) -> date:
    day = date(2024, 1, 1) + timedelta(days=b)
    storage.publish(frame, lake, "bronze", "src__items", {"ingest_date": day.isoformat()})
    return day


def _state(lake: Path) -> tuple[str, str]:
    conflicts = storage.read(lake, "silver", "quarantine_conflicts", {"entity": "items"})
    return (storage.content_hash(lake, "silver", "items"),
            "none" if conflicts is None or conflicts.height == 0 else storage.frame_hash(conflicts.lazy()))


def _incremental(commit: dict) -> bool:
    """A commit of the incremental path: a merge, or an append when the batch held new keys only."""
    return commit["operation"] == "MERGE" or (
        commit["operation"] == "WRITE" and commit["operationParameters"].get("mode") == "Append")


@pytest.mark.parametrize("history", ["scd2", "latest"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(versions, min_size=1, max_size=24), reruns=st.lists(versions, max_size=8),
       seed=st.randoms(use_true_random=False))
def test_incremental_build_equals_a_full_rebuild(tmp_path_factory, history, stream, reruns, seed):
    lake, oracle = tmp_path_factory.mktemp("incremental"), tmp_path_factory.mktemp("rebuilt")
    cfg, oracle_cfg = _cfg(lake, history), _cfg(oracle, history)
    batches = {b: [r for r in stream if r[4] == b] for b in sorted({r[4] for r in stream})}
    steps = [(b, _batch(rows, b, "first")) for b, rows in batches.items()]
    seed.shuffle(steps)
    # reruns of some days with other content, after their first run (a corrected extract)
    for b in sorted({r[4] for r in reruns} & set(batches)):
        steps.append((b, _batch([r for r in reruns if r[4] == b], b, "rerun")))
    merged = 0
    # every batch after the first merges (a tiny table would otherwise be rebuilt whole: its
    # batches touch most of its keys)
    share, silver.MERGE_MAX_SHARE = silver.MERGE_MAX_SHARE, float("inf")
    # ... and a batch of more than 3 keys merges in slices of 3 sorted keys, a commit each
    slice_keys, silver.MERGE_SLICE_KEYS = silver.MERGE_SLICE_KEYS, 3
    try:
        for b, frame in steps:
            day = _stage(cfg, lake, frame, b)
            existed = delta.is_table(storage.table_dir(lake, "silver", "items"))  # the first build creates it
            silver.stage_and_build(cfg, "items", day, "prop")  # merges accumulate in this lake
            merged += existed and _incremental(delta.history(storage.table_dir(lake, "silver", "items"), 1)[0])
            # the oracle lake: the same staged batches, rebuilt whole as `lakehouse rebuild` does
            silver.stage(oracle_cfg, "items", _stage(oracle_cfg, oracle, frame, b), "prop")
            silver.build(oracle_cfg, "items")
            assert _state(lake) == _state(oracle), (history, b, steps)
    finally:
        silver.MERGE_MAX_SHARE, silver.MERGE_SLICE_KEYS = share, slice_keys
    assert merged == len(steps) - 1, "the incremental path did not run"


def test_a_small_batch_merges_its_keys_and_touches_nothing_else(tmp_path):
    """The incremental path is taken (one MERGE commit), only the batch's keys change, and a
    conflicting version of one key is refused without disturbing the conflicts of others."""
    cfg = _cfg(tmp_path, "scd2")
    keys = [f"k{i:03d}" for i in range(200)]
    first = [(k, 0, 1.0, False, 0) for k in keys] + [("k000", 1, 5.0, False, 0)]
    silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch(first, 0, "d"), 0), "t")
    before = storage.scan(tmp_path, "silver", "items").collect()
    # day 1: k001 changes price, k000 repeats its hour-1 version with another price (a conflict)
    second = [("k001", 2, 7.0, False, 1), ("k000", 1, 9.0, False, 1)]
    silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch(second, 1, "d"), 1), "t")
    root = storage.table_dir(tmp_path, "silver", "items")
    assert [c["operation"] for c in delta.history(root, 2)] == ["MERGE", "WRITE"]
    after = storage.scan(tmp_path, "silver", "items").collect()
    untouched = [k for k in keys if k not in ("k000", "k001")]
    assert (after.filter(pl.col("item_id").is_in(untouched)).sort("item_id")
            .equals(before.filter(pl.col("item_id").is_in(untouched)).sort("item_id")))
    assert after.filter(pl.col("item_id") == "k001").height == 2  # two versions now
    assert after.filter(pl.col("item_id") == "k000")["price"].to_list() == [1.0]  # hour 1 refused
    conflicts = storage.read(tmp_path, "silver", "quarantine_conflicts", {"entity": "items"})
    assert [json.loads(k)["item_id"] for k in conflicts["_key"]] == ["k000"]
    # day 2: new keys only: appended, no file of the table read or rewritten
    files = set(delta.files(root))
    silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch([("k900", 1, 3.0, False, 2)], 2, "d"), 2), "t")
    commit = delta.history(root, 1)[0]
    assert commit["operation"] == "WRITE" and commit["operationParameters"]["mode"] == "Append", commit
    assert files < set(delta.files(root)) and len(set(delta.files(root)) - files) == 1
    incremental = _state(tmp_path)
    silver.build(cfg, "items")
    assert _state(tmp_path) == incremental


def test_a_batch_of_many_keys_merges_a_slice_at_a_time_and_equals_a_rebuild(tmp_path, monkeypatch):
    """Above ``MERGE_SLICE_KEYS`` keys a batch is merged in slices of its sorted keys, a commit
    each (bounded memory for a month-sized batch); together they equal the whole rebuild."""
    cfg = _cfg(tmp_path, "scd2")
    keys = [f"k{i:03d}" for i in range(20)]
    silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch([(k, 0, 1.0, False, 0) for k in keys], 0, "d"),
                                                0), "t")
    root = storage.table_dir(tmp_path, "silver", "items")
    before = delta.version(root)
    monkeypatch.setattr(silver, "MERGE_SLICE_KEYS", 2)
    changed = [(k, 1, 2.0, False, 1) for k in keys[3:10]] + [("k900", 1, 3.0, False, 1)]  # 8 keys: 4 slices
    silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch(changed, 1, "d"), 1), "t")
    commits = delta.history(root, delta.version(root) - before)
    assert len(commits) == 4 and all(_incremental(c) for c in commits), commits
    incremental = _state(tmp_path)
    silver.build(cfg, "items")
    assert _state(tmp_path) == incremental


def test_an_attempt_killed_between_staging_and_merging_loses_no_key(tmp_path, monkeypatch):
    """A rerun of a day replaces its batch, then dies before its merge: the retry finds the new
    batch staged already, so only the keys written down before the batch was replaced tell it
    which rows of the old batch must go."""
    cfg = _cfg(tmp_path, "latest")
    share, silver.MERGE_MAX_SHARE = silver.MERGE_MAX_SHARE, float("inf")
    try:
        other = [(f"k{i}", 0, 1.0, False, 1) for i in range(5)]
        silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch(other, 1, "d"), 1), "t")
        first = [("a", 1, 1.0, False, 0), ("b", 1, 2.0, False, 0)]
        silver.stage_and_build(cfg, "items", _stage(cfg, tmp_path, _batch(first, 0, "d"), 0), "t")
        corrected = _batch([("c", 1, 3.0, False, 0)], 0, "rerun")  # the day, extracted again
        day = _stage(cfg, tmp_path, corrected, 0)

        def killed(*args, **kwargs):
            raise SystemExit("killed")

        with monkeypatch.context() as m:
            m.setattr(silver, "build", killed)
            with pytest.raises(SystemExit):
                silver.stage_and_build(cfg, "items", day, "t")
        silver.stage_and_build(cfg, "items", day, "t")  # the retry
    finally:
        silver.MERGE_MAX_SHARE = share
    assert delta.history(storage.table_dir(tmp_path, "silver", "items"), 1)[0]["operation"] == "MERGE"
    ids = sorted(storage.scan(tmp_path, "silver", "items").collect()["item_id"])
    assert ids == ["c", *[f"k{i}" for i in range(5)]]  # a and b left with the batch that had them
    incremental = _state(tmp_path)
    silver.build(cfg, "items")
    assert _state(tmp_path) == incremental
