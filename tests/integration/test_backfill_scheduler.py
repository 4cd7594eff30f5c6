"""`airflow backfill create` through Airflow's own scheduler (airflow standalone, LocalExecutor, SQLite).

The backfill's runs (all 3 at once: --max-active-runs 3) must succeed, give the lake
the same days run one by one would, and trigger the training DAG exactly once (not
once per backfilled day).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from lakehouse import storage, tasks
from tests.airflow_cluster import Standalone
from tests.conftest import (
    START,
    TinyRetail,
    comparable_hashes,
    run_day_direct,
)

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("whole_airflow")]
DAYS = [START + timedelta(days=i) for i in range(3)]
DATES = [d.isoformat() for d in DAYS]
# (and the quality history, which counts the rows each day's inventory batch checked)
FILE_DROP_TABLES = {"bronze.inventory_drop__inventory_counts", "silver.stg_inventory_counts",
                    "silver.inventory_counts", "silver.quarantine", "gold.quality_checks"}


@pytest.mark.timeout(900)  # 2.7 min alone (2026-12-07); a loaded CI machine has stretched it past 10
def test_cli_backfill_runs_through_the_scheduler_and_equals_daily_runs(tiny, tmp_path_factory):
    tiny.advance(DAYS[-1])  # the sources as they stand when the backfill is launched
    # watched over the REST API: each `airflow dags list-runs` poll was a process of ~4 s of CPU
    with Standalone(tiny.home, RETAIL_API_URL=tiny.api_url, RETAIL_END_DATE=DATES[-1],
                    # weekly training would also fire once on unpause (the latest missed Monday)
                    # and race the backfill; this test is about the backfill's own trigger, so
                    # push it to Feb 29
                    RETAIL_TRAIN_SCHEDULE="0 6 29 2 *") as cluster:
        assert "sqlite" in cluster.env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite")
        cluster.unpause("retail_daily")
        cluster.unpause("retail_train")
        # the CLI users run; on SQLite it can lose the single write lock to the scheduler and
        # is retried (the failed transaction is rolled back whole)
        cluster.backfill("retail_daily", DATES[0], DATES[-1], "--max-active-runs", "3")
        runs = cluster.wait_runs("retail_daily", DATES, 600)
        # the backfill's last run announces gold history once: one training run, not one a day
        cluster.wait_new_run("retail_train", set(), 300, run_type="asset_triggered")
        time.sleep(15)  # room for a duplicate to show up, if there were one
        train_runs = [r for r in cluster.dag_runs("retail_train") if r["run_type"] == "asset_triggered"]
        all_runs = cluster.dag_runs("retail_daily")
    assert {r["run_type"] for r in runs} == {"backfill"}
    assert not [r for r in all_runs if r["run_type"] != "backfill"]  # no stray runs
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in DAYS]
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
