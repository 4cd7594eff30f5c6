"""`airflow backfill create` through Airflow's own scheduler (airflow standalone, LocalExecutor, SQLite).

The backfill's runs (all 3 at once: --max-active-runs 3) must succeed, give the lake
the same days run one by one would, and trigger the training DAG exactly once (not
once per backfilled day).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta

import pytest

from lakehouse import storage, tasks
from lakehouse.airflow_env import airflow, airflow_env
from tests.airflow_cluster import wait_for
from tests.conftest import (
    START,
    TinyRetail,
    comparable_hashes,
    free_port,
    run_day_direct,
)

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("whole_airflow")]
DAYS = [START + timedelta(days=i) for i in range(3)]
# (and the quality history, which counts the rows each day's inventory batch checked)
FILE_DROP_TABLES = {"bronze.inventory_drop__inventory_counts", "silver.stg_inventory_counts",
                    "silver.inventory_counts", "silver.quarantine", "gold.quality_checks"}


def _runs(env: dict[str, str], dag_id: str = "retail_daily") -> list[dict]:
    out = airflow("dags", "list-runs", dag_id, "-o", "json", env=env).stdout
    # log lines share the stream; the JSON document is the line that parses as a list
    for line in reversed(out.splitlines()):
        if line.startswith("["):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return []


@pytest.mark.timeout(900)  # ~4.5 min alone; a loaded CI machine has stretched it past 10
def test_cli_backfill_runs_through_the_scheduler_and_equals_daily_runs(tiny, tmp_path_factory):
    tiny.advance(DAYS[-1])  # the sources as they stand when the backfill is launched
    port = free_port()
    env = airflow_env(
        tiny.home, RETAIL_API_URL=tiny.api_url, RETAIL_END_DATE=DAYS[-1].isoformat(),
        AIRFLOW_HOME=str(tiny.home / ".airflow"),
        # weekly training would also fire once on unpause (the latest missed Monday) and race
        # the backfill; this test is about the backfill's own trigger, so push it to Feb 29
        RETAIL_TRAIN_SCHEDULE="0 6 29 2 *",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{port}/execution/",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    airflow("db", "migrate", env=env)
    log = open(tiny.home / "standalone.log", "w")
    standalone = subprocess.Popen([env["PATH"].split(":")[0] + "/airflow", "standalone"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: airflow("dags", "unpause", "retail_daily", env=env, check=False).returncode == 0
                  and "retail_daily" in airflow("dags", "list", env=env).stdout, "the DAG to be parsed", 120)
        airflow("dags", "unpause", "retail_daily", env=env)
        wait_for(lambda: airflow("dags", "unpause", "retail_train", env=env, check=False).returncode == 0,
                  "the training DAG to be parsed", 120)
        # SQLite allows one writer: the CLI can lose the lock to the scheduler and must retry
        # (the failed transaction is rolled back whole); PostgreSQL metadata has no such limit.
        def created() -> bool:
            proc = airflow("backfill", "create", "--dag-id", "retail_daily", "--from-date",
                           DAYS[0].isoformat(), "--to-date", DAYS[-1].isoformat(), "--max-active-runs", "3",
                           env=env, check=False)
            if proc.returncode != 0 and "database is locked" not in proc.stdout:
                raise AssertionError(f"backfill create failed:\n{proc.stdout[-3000:]}")
            return proc.returncode == 0

        wait_for(created, "backfill create to get the SQLite write lock", 120, every_s=3)

        def finished() -> list[dict] | None:
            runs = [r for r in _runs(env) if r["run_id"].startswith("backfill__")]
            if any(r["state"] == "failed" for r in runs):
                raise AssertionError(f"a backfill run failed: {runs}")
            return runs if len(runs) == 3 and all(r["state"] == "success" for r in runs) else None

        runs = wait_for(finished, "3 successful backfill runs", 600, every_s=10)

        def trained() -> list[dict] | None:
            found = [r for r in _runs(env, "retail_train") if r["run_id"].startswith("asset_triggered__")]
            if any(r["state"] == "failed" for r in found):
                raise AssertionError(f"the training run failed: {found}")
            return found if found and all(r["state"] == "success" for r in found) else None

        # the backfill's last run announces gold history once: one training run, not one a day
        wait_for(trained, "the training run the backfill triggers", 300, every_s=5)
        time.sleep(15)  # room for a duplicate to show up, if there were one
        train_runs = [r for r in _runs(env, "retail_train") if r["run_id"].startswith("asset_triggered__")]
    finally:
        import os
        import signal

        os.killpg(standalone.pid, signal.SIGTERM)
        try:
            standalone.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(standalone.pid, signal.SIGKILL)
        log.close()
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in DAYS]
    assert not [r for r in _runs(env) if not r["run_id"].startswith("backfill__")]  # no stray runs
    assert len(train_runs) == 1, train_runs
    backfilled = comparable_hashes(tiny.cfg.lake)

    # the same days, one by one, in a fresh lake fed by the same sources
    other = TinyRetail(tmp_path_factory.mktemp("daily"), tiny.api_url, tiny.api_file)
    other.advance(DAYS[-1])
    for day in DAYS:
        run_day_direct(other.cfg, day)
    tasks.train(other.cfg)
    daily = comparable_hashes(other.cfg.lake)
    # A file drop goes to the first run that sees it: with 3 runs at once, a later day's run can
    # take an earlier day's files. Its rows then carry another ingest_date, nothing else moves:
    # same rows in silver, the same gold, and every other table is hash-equal.
    assert {t for t in daily if daily[t] != backfilled[t]} <= FILE_DROP_TABLES
    volatile = {"ingest_date", "_run_id", "_ingested_at"}
    for table in ("stg_inventory_counts", "inventory_counts", "quarantine"):  # a file's bad rows too
        assert storage.content_hash(other.cfg.lake, "silver", table, ignore=volatile) == \
            storage.content_hash(tiny.cfg.lake, "silver", table, ignore=volatile)
    bronze = "inventory_drop__inventory_counts"
    assert storage.row_count(other.cfg.lake, "bronze", bronze) == storage.row_count(tiny.cfg.lake, "bronze", bronze)
