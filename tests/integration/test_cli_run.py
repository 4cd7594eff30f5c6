"""``lakehouse run`` runs the declared daily steps: a broken source fails its own tasks only,
every failure is reported, the exit code says so, and the run is in ``lakehouse status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl

from lakehouse import runlog, storage
from tests.conftest import START, free_port


def test_a_broken_source_fails_alone_and_the_run_is_recorded(tiny):
    tiny.advance(START)
    env = {**os.environ, "RETAIL_API_URL": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    out = subprocess.run([sys.executable, "-m", "lakehouse.cli", "run", "--date", START.isoformat()],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode != 0
    assert "1 task(s) failed: extract_supplier_api" in out.stderr
    printed = json.loads(out.stdout)
    assert printed["extract_supplier_api"]["state"] == "failed"
    assert printed["silver_supplier_performance"]["state"] == "upstream_failed"
    # every entity of the healthy sources reached silver
    healthy = [c.entity for c in tiny.cfg.contracts if c.source != "supplier_api"]
    assert all(printed[f"silver_{e}"]["state"] == "success" for e in healthy)
    assert all(storage.row_count(tiny.cfg.lake, "silver", e) > 0 for e in healthy if e != "inventory_counts")
    assert printed["build_gold"]["state"] == "upstream_failed"

    # the history holds one record per task, computed independently of the CLI's own output
    tries = runlog.read(tiny.cfg.lake)
    assert tries["run_type"].unique().to_list() == ["cli"]
    assert dict(tries.group_by("state").len().iter_rows()) == {
        state: sum(1 for v in printed.values() if v["state"] == state)
        for state in {v["state"] for v in printed.values()}}
    summary = runlog.run_summary(tries)
    assert summary.height == 1 and summary["failed"][0] == 1
    assert summary["business_date"][0] == START

    status = subprocess.run([sys.executable, "-m", "lakehouse.cli", "status", "--as-of", START.isoformat()],
                            capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    assert "1 failed" in status and summary["run_id"][0] in status
    assert pl.Series(tries["task_id"]).n_unique() == len(printed)
