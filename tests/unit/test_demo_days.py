"""``make demo SCALE=seed`` loads two years through Airflow a run every 30 days: every day of
history is in exactly one run's batch, and the world it simulates is kept for ``--next-day``."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines.retail import demo
from pipelines.retail.simulator import SimulationParams


def test_the_load_runs_cover_the_history_once_and_end_on_the_start_date():
    start = date(2026, 10, 31)
    runs = demo.load_days(start, 730, 30)
    assert runs[0] == start - timedelta(days=730) and runs[-1] == start
    gaps = [(b - a).days for a, b in zip(runs, runs[1:], strict=False)]
    assert all(0 < g <= 30 for g in gaps) and sum(gaps) == 730  # each day in one batch: (run before, run]
    assert len(runs) == 26


def test_next_day_extends_the_world_make_demo_made(tmp_path):
    """Other parameters would rewrite the simulated past (a false late correction of every day)."""
    assert demo.world_params(tmp_path) == {}  # a demo made before the file was kept: the defaults
    first = date(2024, 10, 31)
    demo.keep_world_params(tmp_path, "seed", first)
    params = SimulationParams(**demo.world_params(tmp_path), end=date(2026, 11, 4))
    assert (params.n_skus, params.n_warehouses, params.n_customers, params.history_start) == (10_247, 12, 5_000, first)
    demo.keep_world_params(tmp_path / "other", "demo", SimulationParams().history_start)
    assert SimulationParams(**demo.world_params(tmp_path / "other")) == SimulationParams()


def test_a_home_keeps_one_world(tmp_path):
    """A demo of another scale in a home that holds a world is refused: the other retailer's
    sources would overwrite these, and the lake would take them as corrections of every day."""
    demo.keep_world_params(tmp_path, "small", date(2024, 9, 1))
    demo.keep_world_params(tmp_path, "small", date(2024, 9, 1))  # the same world again: a rerun
    with pytest.raises(SystemExit, match=r"holds the small-scale world.*data/seed"):
        demo.keep_world_params(tmp_path, "seed", date(2024, 10, 31))
    assert demo.world_params(tmp_path)["n_skus"] == 24
    assert {s: demo.home_of(s).relative_to(demo.PROJECT).as_posix() for s in demo.SCALES} == {
        "demo": ".", "small": "data/small", "seed": "data/seed"}
