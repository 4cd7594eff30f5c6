"""Champion/challenger: promote only the better model, roll back to the one it replaced."""

from datetime import date

import polars as pl
import pytest

from lakehouse import registry, storage

NAME = "demand"


def _register(lake, version: str) -> None:
    row = {"model_name": NAME, "artifact": f"_models/{version}/model.json", "metric_wape": 0.5}
    storage.publish(pl.DataFrame([row]), lake, "gold", "ml_models", {"model_version": version})


def _events(lake) -> list[tuple[str, str]]:
    events = storage.scan(lake, "gold", registry.EVENTS_TABLE).sort("sequence").collect()
    return list(zip(events["action"], events["model_version"], strict=True))


def test_decide_promotes_only_a_strictly_better_challenger():
    assert registry.decide(0.4, None)[0]
    assert registry.decide(0.4, 0.5)[0]
    assert not registry.decide(0.5, 0.5)[0]
    assert not registry.decide(0.6, 0.5)[0]


def test_promote_rollback_and_their_history(tmp_path):
    for v in ("v1", "v2", "v3"):
        _register(tmp_path, v)
    day = date(2026, 11, 1)
    assert registry.champion(tmp_path, NAME) is None
    assert registry.promote(tmp_path, NAME, "v1", reason="first", on=day)
    assert not registry.promote(tmp_path, NAME, "v1", reason="again", on=day)  # a rerun records nothing
    registry.promote(tmp_path, NAME, "v2", reason="better", on=day)
    registry.promote(tmp_path, NAME, "v3", reason="better", on=day)
    assert registry.rollback(tmp_path, NAME, on=day) == "v2"
    assert registry.rollback(tmp_path, NAME, on=day) == "v1"
    assert registry.champion(tmp_path, NAME) == "v1"
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(tmp_path, NAME, on=day)
    assert _events(tmp_path) == [("promote", "v1"), ("promote", "v2"), ("promote", "v3"),
                                 ("rollback", "v2"), ("rollback", "v1")]
    assert registry.artifact(tmp_path, NAME, "v1") == "_models/v1/model.json"


def test_unknown_versions_are_refused(tmp_path):
    _register(tmp_path, "v1")
    with pytest.raises(registry.RegistryError, match="no registered version 'nope'"):
        registry.promote(tmp_path, NAME, "nope", reason="typo", on=date(2026, 11, 1))


def test_champion_as_of_a_date_replays_only_the_changes_serving_by_then(tmp_path):
    for v in ("v1", "v2", "v3"):
        _register(tmp_path, v)
    d = date(2026, 11, 1)
    registry.promote(tmp_path, NAME, "v1", reason="first", on=d)
    registry.promote(tmp_path, NAME, "v2", reason="better", on=date(2026, 11, 3))
    registry.promote(tmp_path, NAME, "v3", reason="better", on=date(2026, 11, 5))
    registry.rollback(tmp_path, NAME, on=date(2026, 11, 6))
    assert registry.champion(tmp_path, NAME, as_of=date(2026, 10, 31)) is None
    assert registry.champion(tmp_path, NAME, as_of=d) == "v1"
    assert registry.champion(tmp_path, NAME, as_of=date(2026, 11, 4)) == "v2"
    assert registry.champion(tmp_path, NAME, as_of=date(2026, 11, 5)) == "v3"
    assert registry.champion(tmp_path, NAME, as_of=date(2026, 11, 6)) == "v2"
    assert registry.champion(tmp_path, NAME) == "v2"


def test_a_training_frames_hash_is_sha256_of_its_schema_and_csv_text():
    """Model versions are named by it and stored: a spec'd hash, not Polars' internal row hash."""
    import hashlib

    from lakehouse import ml

    frame = pl.DataFrame({"sku": ["A", "B"], "day": [date(2026, 1, 2), date(2026, 1, 3)], "units": [1.5, None]})
    expected = hashlib.sha256((str(frame.schema) + "A,2026-01-02,1.5\nB,2026-01-03,\n").encode()).hexdigest()[:16]
    assert ml.frame_hash(frame) == expected
    assert ml.frame_hash(frame.with_columns(units=pl.Series([1.5, 0.0]))) != expected
    assert ml.frame_hash(frame.cast({"units": pl.Float32})) != expected  # the dtype is content too
