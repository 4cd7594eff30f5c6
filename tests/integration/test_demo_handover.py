"""The README's operator path, walked as a user would: ``make demo`` (here one daily run after
the initial load), then ``make airflow-ui``, then the README's backfill of a day the demo
already ran and a cleared task, with what the UI shows checked over the REST API and in
headless chromium: run states, true durations, task logs, no run the user did not ask for;
then ``make demo-next-day``, which must leave the lake's settled past as it was.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from lakehouse.airflow_env import PROJECT, airflow_env
from lakehouse.local_airflow import LocalAirflow, wait_for
from tests import browser
from tests.conftest import free_port

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("whole_airflow"),
              pytest.mark.timeout(1500)]  # ~4 min alone; waits its turn behind the other clusters
FIRST, DAY = "2026-10-31", "2026-11-01"
NEXT_DAY = date(2026, 11, 2)  # make demo-next-day after the demo above


def _seconds(run: dict) -> float:
    return (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])).total_seconds()


def test_the_demo_hands_over_to_the_ui_with_logs_durations_and_working_readme_commands(tmp_path, monkeypatch):
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETAIL_", "AIRFLOW", "LAKEHOUSE_"))}
    env |= {"LAKEHOUSE_HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / ".airflow"),
            "LAKEHOUSE_ALERT_STATE": str(tmp_path / "alerts"), "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
    demo = [sys.executable, "-m", "pipelines.retail.demo", "--home", str(tmp_path), "--api-port", str(api_port)]
    # the small world (24 SKUs x 2 warehouses, the same 26 months): the operator's path is the
    # same at every scale, and the demo's 120 x 4 took 2.3x as long to load and train (beside a bench)
    out = subprocess.run([*demo, "--days", "1", "--scale", "small"], env=env, cwd=PROJECT, capture_output=True,
                         text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{DAY}  retail_daily succeeded through Airflow's scheduler" in out.stdout
    _largest_task_peak_is_the_run_historys(out.stdout, tmp_path, monkeypatch)

    ui = subprocess.Popen([*demo, "--ui"], env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)
    try:
        af = LocalAirflow(airflow_env(tmp_path, **env), tmp_path / "unused.log")
        wait_for(af._healthy, "make airflow-ui's api-server", 180, every_s=2)
        first = {r["logical_date"][:10]: r for r in af.dag_runs("retail_daily")}
        assert set(first) == {FIRST, DAY} and {r["run_type"] for r in first.values()} == {"backfill"}
        for run in first.values():  # true durations: seconds, not the ~30 days of `dags test` runs
            assert run["state"] == "success" and 0 < _seconds(run) < 900, run
        train = af.dag_runs("retail_train")
        assert [r["run_type"] for r in train] == ["asset_triggered"]  # no surprise weekly run
        assert af.api("GET", "dags/retail_train")["is_paused"] and not af.api("GET", "dags/retail_daily")["is_paused"]

        # the README, right after the demo: rerun a day it already ran, then clear one task
        af.backfill("retail_daily", DAY, DAY, "--max-active-runs", "1", "--reprocess-behavior", "completed")
        wait_for(lambda: (r := af.dag_runs("retail_daily")) and any(
            x["logical_date"][:10] == DAY and x["end_date"] and x["end_date"] > first[DAY]["end_date"]
            and x["state"] == "success" for x in r), "the backfilled day to succeed again", 900)
        run_id = first[DAY]["dag_run_id"]
        # what the UI's Clear button on the task instance sends (`airflow tasks clear` has no run
        # filter, and its date window on SQLite cleared other days' runs too: README)
        cleared = af.api("POST", "dags/retail_daily/clearTaskInstances", json={
            "dry_run": False, "dag_run_id": run_id, "task_ids": ["build_gold"], "only_failed": False})
        assert [t["task_id"] for t in cleared["task_instances"]] == ["build_gold"], cleared

        def gold_rerun() -> dict | None:
            # clearing puts the run back to queued; the scheduler marks it done again on a later
            # loop than the task's end, so both are waited for (the task's success alone raced it)
            ti = next(t for t in af.task_instances("retail_daily", run_id) if t["task_id"] == "build_gold")
            run_state = af.api("GET", f"dags/retail_daily/dagRuns/{run_id}")["state"]
            return ti if ti["state"] == "success" and ti["try_number"] >= 3 and run_state == "success" else None

        ti = wait_for(gold_rerun, "the cleared build_gold to run again", 600)
        runs = af.dag_runs("retail_daily")
        assert sorted(r["logical_date"][:10] for r in runs) == [FIRST, DAY]  # nothing unasked for
        assert all(r["state"] == "success" for r in runs)

        log = af.api("GET", f"dags/retail_daily/dagRuns/{run_id}/taskInstances/silver_order_lines/logs/2",
                     params={"full_content": True})
        lines = [str(c.get("event", "")) for c in log["content"]]
        assert any(re.search(r"\d+ valid, \d+ quarantined", line) for line in lines), lines[:40]
        gold_log = af.api("GET", f"dags/retail_daily/dagRuns/{run_id}/taskInstances/build_gold/logs/"
                                 f"{ti['try_number']}", params={"full_content": True})
        assert len(gold_log["content"]) > 5

        with browser.page() as (tab, errors):
            browser.log_in(tab, af.url, af.password)
            tab.goto(f"{af.url}/dags/retail_daily/runs/{run_id}/tasks/silver_order_lines")
            tab.get_by_text(re.compile(r"\d+ valid, \d+ quarantined")).first.wait_for(timeout=90_000)
            tab.screenshot(path=str(browser.artifacts_dir() / "demo_task_log.png"), full_page=True)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
    assert "Airflow UI on http://localhost" in ui.stdout.read()
    assert not af._healthy()  # SIGTERM stopped Airflow with it

    # the README's way to advance the demo one day: only that day is simulated, and the past the
    # lake already holds stays as it was (it used to be redrawn and arrive as late corrections)
    settled = gold_revenue_by_day(tmp_path, monkeypatch, before=NEXT_DAY - timedelta(days=3))
    out = subprocess.run([*demo, "--next-day"], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{NEXT_DAY}  retail_daily succeeded through Airflow's scheduler" in out.stdout
    assert (tmp_path / "data" / "sources" / "simulated_until.txt").read_text() == NEXT_DAY.isoformat()
    # corrections arrive at most 3 days after the order: every earlier day's revenue is final
    assert gold_revenue_by_day(tmp_path, monkeypatch, before=NEXT_DAY - timedelta(days=3)) == settled
    assert len(settled) > 700


def _largest_task_peak_is_the_run_historys(printed: str, home, monkeypatch) -> None:
    """The summary's largest task memory, against the run history's records read as plain JSON:
    every Airflow task's process recorded its peak."""
    import json
    from pathlib import Path

    from lakehouse import runlog
    from lakehouse.config import load_domain

    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    records = [json.loads(f.read_text()) for f in Path(runlog.runs_dir(load_domain(PROJECT / "configs" / "retail")
                                                                         .lake)).rglob("*.json")]
    assert records and all((r.get("peak_rss_mb") or 0) > 100 for r in records), records[:3]
    top = max(records, key=lambda r: r["peak_rss_mb"])
    line = next(ln for ln in printed.splitlines() if ln.startswith("largest peak memory of a task: "))
    assert line.startswith(f"largest peak memory of a task: {top['peak_rss_mb']:,.0f} MB, {top['task_id']} of "
                           f"{top['dag_id']}"), (line, top)


def gold_revenue_by_day(home, monkeypatch, before: date) -> dict[date, float]:
    from lakehouse import storage
    from lakehouse.config import load_domain

    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    cfg = load_domain(PROJECT / "configs" / "retail")
    sales = storage.scan(cfg.lake, "gold", "agg_sales_category_warehouse_daily").filter(pl.col("order_date") < before)
    return dict(sales.group_by("order_date").agg(pl.col("revenue").sum().round(2)).collect().iter_rows())
