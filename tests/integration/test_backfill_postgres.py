"""The production shape: Airflow's components on PostgreSQL metadata, a broken file drop.

A 3-day CLI backfill (``--max-active-runs 3``) meets a corrupt file on day 2 of a source that
says ``on_unreadable_file: fail`` (the default sets the file aside: tests/integration/test_faults.py):
that is a permanent error, so its extract fails at once (try 1, no retries), gold is not published
for the failed days, and on-call gets one message for both days. After the file is
fixed, ``airflow backfill create --reprocess-behavior failed`` reruns only the failed
days, and one recovery message follows. The UI is checked on the same cluster: no
import errors over the REST API, and a headless chromium logs in and opens the grid. On the
same cluster: secrets are masked in real task logs, and a worker that dies under a running
task (SIGKILL, heartbeat timeout 30 s) is retried while its frozen task process, thawed after
the retry published, is refused by attempt fencing.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from lakehouse import runlog, storage
from lakehouse.airflow_env import PROJECT
from lakehouse.freshness import latest_date
from tests import browser
from tests.airflow_cluster import Standalone, wait_for
from tests.conftest import START
from tests.fakes.slack import FakeSlack

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("whole_airflow")]
DAYS = [START + timedelta(days=i) for i in range(3)]
DATES = [d.isoformat() for d in DAYS]
EXTRACT = "extract_inventory_drop"


def _corrupt_drop_arriving_on(landing, day) -> tuple:
    """Overwrite a CSV count file that lands during ``day`` with undecodable bytes (same arrival)."""
    import os

    path = sorted(landing.glob(f"inventory_*_{day - timedelta(days=1):%Y%m%d}.csv"))[0]
    stat = path.stat()
    path.write_bytes(b"count_date,warehouse_id,sku,on_hand\n\xff\xfe\x00\x81garbage\n")
    os.utime(path, (stat.st_atime, stat.st_mtime))
    return path, stat


def staged_inventory_days(tiny) -> list[str]:
    """The days whose inventory batch passed silver's gate, from the quality history, which has
    a row for every batch: a day whose count file another concurrent run took stages an empty
    batch, and an empty batch puts no partition in the (Delta) staged table."""
    from lakehouse import quality

    checks = quality.history(tiny.cfg)
    if checks is None:
        return []
    passed = (checks.filter(pl.col("dataset") == "silver.inventory_counts", pl.col("check") == "quarantine_rate")
              .group_by("business_date").agg((pl.col("status") != quality.BLOCKED).all().alias("ok"))
              .filter("ok").collect())
    return sorted(d.isoformat() for d in passed["business_date"])


def _ui_grid_screenshot(cluster: Standalone) -> None:
    with browser.page() as (tab, errors):
        browser.log_in(tab, cluster.url, cluster.password)
        tab.goto(f"{cluster.url}/dags/retail_daily")  # the DAG page opens on its grid
        tab.get_by_text("announce_backfill").first.wait_for(timeout=60_000)
        tab.wait_for_timeout(2000)  # the run bars load after the task list
        tab.screenshot(path=str(browser.artifacts_dir() / "airflow_retail_daily_grid.png"), full_page=True)
        body = tab.inner_text("body")
    assert "data-platform" in body and "build_gold" in body, body[:2000]


FRAGILE_DAG = textwrap.dedent('''
    import os
    import time
    from datetime import datetime, timedelta
    from pathlib import Path

    from airflow.sdk import DAG, task

    from lakehouse.dag_factory import task_callbacks

    CONFIG = os.environ["FRAGILE_CONFIG_DIR"]
    with DAG("fragile", start_date=datetime(2026, 1, 1), schedule=None,
             default_args={**task_callbacks(CONFIG), "retries": 1, "retry_delay": timedelta(seconds=1)}):
        @task
        def publish_slowly(**context):
            import polars as pl

            from lakehouse import storage
            from lakehouse.config import load_domain

            try_number, box = context["ti"].try_number, Path(os.environ["FRAGILE_DIR"])
            (box / f"try{try_number}.pid").write_text(str(os.getpid()))
            while try_number == 1 and not (box / "go").exists():
                time.sleep(0.2)
            try:
                storage.publish(pl.DataFrame({"v": [f"{context['run_id']} try {try_number}"]}),
                                load_domain(CONFIG).lake, "silver", "fragile")
            except storage.StaleAttempt as exc:
                (box / f"try{try_number}.stale").write_text(str(exc))
                raise

        publish_slowly()
''')


def _dags_with_a_leaky_task(home: Path) -> Path:
    """The project's DAG files (symlinked: they find their config through the link) plus a
    DAG whose task prints and logs a secret from the environment, and one whose first try
    waits to be frozen and cut off (the dead-worker scenario)."""
    from tests.security.test_secrets import LEAKY_DAG

    dags = home / "dags"
    dags.mkdir()
    for f in (PROJECT / "dags").glob("*.py"):
        (dags / f.name).symlink_to(f)
    (dags / "leaky.py").write_text(LEAKY_DAG)
    (dags / "fragile.py").write_text(FRAGILE_DAG)
    return dags


def _fragile_run(cluster: Standalone, box: Path):
    """Trigger the fragile DAG; its try 1's task process and that process's supervisor."""
    import psutil

    for marker in box.iterdir():
        marker.unlink()
    run = cluster.api("POST", "dags/fragile/dagRuns", json={"logical_date": None})["dag_run_id"]
    pid = int(wait_for(lambda: (box / "try1.pid").exists() and (box / "try1.pid").read_text(),
                       "try 1 to start", 180, every_s=1))
    task = psutil.Process(pid)
    supervisor = task.parent()
    assert supervisor is not None and "airflow" in " ".join(supervisor.cmdline()), supervisor
    return run, task, supervisor


def _retried_to_success(cluster: Standalone, run: str, box: Path, lake, timeout_s: float) -> None:
    wait_for(lambda: (box / "try2.pid").exists(), "try 2 to start", timeout_s, every_s=2)
    state = wait_for(lambda: cluster.api("GET", f"dags/fragile/dagRuns/{run}")["state"] in ("success", "failed")
                     and cluster.api("GET", f"dags/fragile/dagRuns/{run}")["state"], "the fragile run", 180, every_s=2)
    (ti,) = cluster.task_instances("fragile", run)
    assert state == "success" and ti["try_number"] == 2, (state, ti)
    assert storage.read(lake, "silver", "fragile")["v"].to_list() == [f"{run} try 2"]
    # try 2's commit carries it as the task instance's application transaction (the table-level fence)
    from deltalake import DeltaTable

    started = cluster.api("GET", f"dags/fragile/dagRuns/{run}")["start_date"]
    app_id = f"{storage.fencing.APP_ID_PREFIX}fragile.{ti['task_id']}.{run}.-1"
    assert DeltaTable(str(storage.table_dir(lake, "silver", "fragile"))).transaction_version(app_id) == \
        storage.fencing.attempt_rank(2, started), (app_id, started)


def _dead_worker_is_retried_and_its_zombie_publishes_nothing(cluster: Standalone, box: Path, lake) -> None:
    """1. SIGKILL of try 1's running task process: Airflow marks it up for retry, try 2 publishes.
    2. A worker cut off: try 1's task process and its supervisor (the process that heartbeats
    for it) are frozen; with the heartbeat timeout at 30 s the scheduler gives up on try 1 and
    try 2 runs and publishes. Then try 1 thaws and carries on: its publish is refused (attempt
    fencing, ``storage.claim_attempt``), so the table keeps try 2's content."""
    cluster.unpause("fragile")
    run, task, _ = _fragile_run(cluster, box)
    task.kill()
    _retried_to_success(cluster, run, box, lake, 120)

    run, zombie, supervisor = _fragile_run(cluster, box)
    zombie.suspend()
    supervisor.suspend()
    try:
        _retried_to_success(cluster, run, box, lake, 240)
        (box / "go").write_text("")
        zombie.resume()  # the supervisor stays frozen: nothing but fencing stops the zombie
        wait_for(lambda: (box / "try1.stale").exists(), "the thawed try 1 to reach its publish", 60, every_s=1)
        assert "superseded by try 2" in (box / "try1.stale").read_text()
        assert storage.read(lake, "silver", "fragile")["v"].to_list() == [f"{run} try 2"]
    finally:
        for proc in (zombie, supervisor):
            with contextlib.suppress(Exception):
                proc.kill()


def _secrets_are_masked_in_real_task_logs(cluster: Standalone, token: str, password: str) -> None:
    """A real task run (supervisor + task process, as on any worker) masks what the task
    logs, and nothing it prints reaches a log file in clear: ``airflow dags test`` runs
    in-process and masks nothing, so this is checked here."""
    cluster.unpause("leaky")
    run = cluster.api("POST", "dags/leaky/dagRuns", json={"logical_date": None})
    wait_for(lambda: cluster.api("GET", f"dags/leaky/dagRuns/{run['dag_run_id']}")["state"] == "success",
             "the leaky DAG run", 180, every_s=3)
    log = cluster.api("GET", f"dags/leaky/dagRuns/{run['dag_run_id']}/taskInstances/careless/logs/1",
                      params={"full_content": True})
    text = json.dumps(log)
    assert "calling Slack with ***" in text and "erp is postgresql://erp:***@db" in text, text[-2000:]
    assert token not in text and password not in text
    files = "".join(p.read_text(errors="replace") for p in cluster.airflow_home.rglob("*.log"))
    assert token not in files and password not in files


def test_backfill_on_postgres_metadata_reprocesses_only_failed_days(tiny, postgres_url, monkeypatch):
    tiny.advance(DAYS[-1])
    landing = tiny.home / "data" / "sources" / "landing" / "inventory"
    bad, _ = _corrupt_drop_arriving_on(landing, DAYS[1])
    token, password = f"xoxb-fake-{uuid.uuid4().hex}", f"pw{uuid.uuid4().hex[:12]}"
    box = tiny.home / "fragile"
    box.mkdir()
    with FakeSlack() as slack, Standalone(tiny.home, postgres_url, RETAIL_API_URL=tiny.api_url,
                                          RETAIL_END_DATE=DATES[-1], SLACK_WEBHOOK_URL=slack.webhook_url,
                                          RETAIL_ON_UNREADABLE_FILE="fail",
                                          RETAIL_TRAIN_SCHEDULE="0 6 29 2 *",
                                          AIRFLOW__CORE__DAGS_FOLDER=str(_dags_with_a_leaky_task(tiny.home)),
                                          SLACK_BOT_TOKEN=token,
                                          FRAGILE_DIR=str(box), FRAGILE_CONFIG_DIR=str(PROJECT / "configs" / "retail"),
                                          AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="30",
                                          AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="5",
                                          LEAKY_ERP_URL=f"postgresql://erp:{password}@db:5432/erp") as cluster:
        assert "postgresql" in cluster.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        cluster.unpause("retail_daily")
        assert cluster.api("GET", "importErrors")["total_entries"] == 0
        dag = cluster.api("GET", "dags/retail_daily/details")
        assert dag["owners"] == ["data-platform"] and dag["doc_md"] and {"lakehouse", "retail"} <= {
            t["name"] for t in dag["tags"]}

        cluster.backfill("retail_daily", DATES[0], DATES[-1], "--max-active-runs", "3")
        first = {r["logical_date"][:10]: r for r in
                 cluster.wait_runs("retail_daily", DATES, 600, states=("success", "failed"))}
        assert {d: r["state"] for d, r in first.items()} == {
            DATES[0]: "success", DATES[1]: "failed", DATES[2]: "failed"}
        for day in DATES[1:]:  # a permanent error: failed on its first try, no retries spent
            tis = {t["task_id"]: t for t in cluster.task_instances("retail_daily", first[day]["dag_run_id"])}
            assert tis[EXTRACT]["state"] == "failed" and tis[EXTRACT]["try_number"] == 1
            assert tis["build_gold"]["state"] == "upstream_failed"
        # nothing of the broken source got past bronze on the failed days
        assert staged_inventory_days(tiny) == DATES[:1]
        failures = [t for t in slack.texts() if EXTRACT in t]
        assert len(failures) == 1 and "FileError" in failures[0] and bad.name in failures[0], slack.texts()

        # the file is re-sent correctly; only the failed days run again
        bad.unlink()
        tiny.advance(DAYS[-1])
        cluster.backfill("retail_daily", DATES[0], DATES[-1], "--max-active-runs", "3",
                         "--reprocess-behavior", "failed")
        again = {r["logical_date"][:10]: r for r in cluster.wait_runs("retail_daily", DATES, 600)}
        assert again[DATES[0]]["dag_run_id"] == first[DATES[0]]["dag_run_id"]
        assert again[DATES[0]]["end_date"] == first[DATES[0]]["end_date"]  # day 1 was not rerun
        for day in DATES[1:]:
            tis = {t["task_id"]: t for t in cluster.task_instances("retail_daily", again[day]["dag_run_id"])}
            assert tis[EXTRACT]["state"] == "success" and tis[EXTRACT]["try_number"] == 2
        assert staged_inventory_days(tiny) == DATES
        assert latest_date(tiny.cfg.lake, "gold", "fct_order_lines") == DAYS[-1]
        messages = [t for t in slack.texts() if EXTRACT in t]
        assert len(messages) == 2 and "succeeded again" in messages[1] and "2 date(s)" in messages[1], messages
        assert not any("DAG run" in t for t in slack.texts())  # folded into the task's incident

        _ui_grid_screenshot(cluster)
        _secrets_are_masked_in_real_task_logs(cluster, token, password)
        _dead_worker_is_retried_and_its_zombie_publishes_nothing(cluster, box, tiny.cfg.lake)

    # the run history the dashboard reads saw every try, day 1 once
    tries = runlog.read(tiny.cfg.lake).filter(pl.col("dag_id") == "retail_daily")
    runs = runlog.run_summary(tries)
    assert runs.height == 3 and set(runs["state"]) == {"success"}
    day1 = tries.filter(pl.col("business_date") == DAYS[0])
    assert day1["try_number"].max() == 1 and day1.height == day1["task_id"].n_unique()
