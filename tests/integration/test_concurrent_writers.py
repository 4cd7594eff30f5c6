"""Two runs of the same business date racing (a backfill overlapping the scheduled run):
the lake locks make one wait for the other, nothing is lost or mixed, and the result is
what one run alone gives."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from tests.conftest import START, comparable_hashes, run_day_direct

DAYS = [START, START + timedelta(days=1)]


def test_two_runs_of_one_day_at_once_equal_one_run(tiny):
    tiny.advance(DAYS[0])
    run_day_direct(tiny.cfg, DAYS[0])
    tiny.advance(DAYS[1])
    run = [sys.executable, "-m", "lakehouse.cli", "run", "--date", DAYS[1].isoformat()]
    racers = [subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in racers]
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    raced = comparable_hashes(tiny.cfg.lake)

    # the same day once more, alone: a rerun changes nothing, so the race lost and mixed nothing
    run_day_direct(tiny.cfg, DAYS[1])
    assert comparable_hashes(tiny.cfg.lake) == raced
