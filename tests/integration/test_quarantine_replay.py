"""`lakehouse quarantine replay`: rows that pass a relaxed contract move to silver and gold, exactly once."""

from __future__ import annotations

import shutil
from datetime import timedelta

import polars as pl
import pytest

from lakehouse import gold, replay, storage
from tests.conftest import START, run_day_direct
from tests.integration.test_pipeline import reconcile

DAYS = [START, START + timedelta(days=1)]
RULE = "greater_than_or_equal_to(1.0)"


def _relaxed(cfg, entity: str = "order_lines", column: str = "quantity"):
    """The contract after a change: ``column`` may now be below 1 (e.g. returns are allowed)."""
    contracts = [c if c.entity != entity else c.model_copy(update={"columns": [
        col.model_copy(update={"ge": None}) if col.name == column else col for col in c.columns]})
        for c in cfg.contracts]
    return cfg.model_copy(update={"contracts": contracts})


def _quarantined(cfg) -> pl.DataFrame:
    return storage.scan(cfg.lake, "silver", "quarantine").filter(pl.col("entity") == "order_lines").collect()


def _stg_hashes(cfg) -> pl.DataFrame:
    """(batch, record) pairs: a record re-read by a lookback extraction is in two batches, once each."""
    return storage.scan(cfg.lake, "silver", "stg_order_lines").select(
        pl.col("ingest_date").cast(pl.String), "_record_hash").collect()


@pytest.fixture
def lake(tiny):
    for day in DAYS:
        tiny.advance(day)
        run_day_direct(tiny.cfg, day)
    return tiny


def test_replay_promotes_rows_a_relaxed_contract_accepts_exactly_once(lake):
    cfg = _relaxed(lake.cfg)
    before = _quarantined(cfg)
    passing = before.filter(pl.col("rule") == RULE)  # broke only the relaxed rule
    assert passing.height > 10 and before.height > passing.height - 1
    silver_rows = storage.row_count(cfg.lake, "silver", "order_lines")

    out = replay.replay(cfg, "order_lines", START)
    assert out["promoted"] == passing.height and out["replayed"] == before.height
    after = _quarantined(cfg)
    assert after.height == before.height - passing.height
    assert not set(after["record_hash"]) & set(passing["record_hash"])  # left quarantine
    stg = _stg_hashes(cfg)
    moved = passing.select(pl.col("ingest_date").cast(pl.String), pl.col("record_hash").alias("_record_hash"))
    assert moved.join(stg, on=moved.columns, how="anti").is_empty()  # each into the batch it came from
    assert stg.is_duplicated().sum() == 0  # once per batch
    assert storage.row_count(cfg.lake, "silver", "order_lines") == silver_rows + passing["record_hash"].n_unique()

    gold.build_all(cfg, DAYS[-1])
    reconcile(cfg)  # every source line: exactly once in gold or exactly once in quarantine

    hashes = storage.layer_hashes(cfg.lake)
    again = replay.replay(cfg, "order_lines", START)
    assert again["promoted"] == 0 and storage.layer_hashes(cfg.lake) == hashes  # a second replay: no-op


def test_replay_since_leaves_earlier_batches_alone(lake):
    cfg = _relaxed(lake.cfg)
    first_day = _quarantined(cfg).filter(pl.col("ingest_date").cast(pl.String) == DAYS[0].isoformat())
    out = replay.replay(cfg, "order_lines", DAYS[1])
    assert list(out["per_day"]) == [DAYS[1].isoformat()]
    still = _quarantined(cfg).filter(pl.col("ingest_date").cast(pl.String) == DAYS[0].isoformat())
    assert still.sort("record_hash").equals(first_day.sort("record_hash"))


def test_a_replay_cut_off_between_its_two_writes_finishes_exactly_once(lake, tmp_path, monkeypatch):
    cfg = _relaxed(lake.cfg)
    other = cfg.model_copy(update={"lake_root": str(tmp_path / "copy")})
    shutil.copytree(cfg.lake, other.lake)
    replay.replay(cfg, "order_lines", START)  # the clean replay

    real_publish = storage.publish

    def dies_on_quarantine(frame, lake, layer, table, *args, **kwargs):
        if table == "quarantine":
            raise OSError("killed after the batch was written, before quarantine was")
        return real_publish(frame, lake, layer, table, *args, **kwargs)

    monkeypatch.setattr(storage, "publish", dies_on_quarantine)
    with pytest.raises(OSError):
        replay.replay(other, "order_lines", START)
    monkeypatch.setattr(storage, "publish", real_publish)
    assert _stg_hashes(other).is_duplicated().sum() == 0
    replay.replay(other, "order_lines", START)  # the rerun finds the rows promoted and clears them
    assert storage.layer_hashes(other.lake) == storage.layer_hashes(cfg.lake)


def test_an_unknown_entity_fails_before_touching_anything(lake):
    hashes = storage.layer_hashes(lake.cfg.lake)
    with pytest.raises(StopIteration):
        replay.replay(lake.cfg, "no_such_entity", START)
    assert storage.layer_hashes(lake.cfg.lake) == hashes
