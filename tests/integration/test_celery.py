"""retail_daily on Airflow's CeleryExecutor: the machine's Redis as broker, PostgreSQL as
metadata database and result backend, two named ``airflow celery worker`` processes.

A 7-day ``airflow backfill create --max-active-runs 3`` completes, tasks ran on both
workers, and the lake equals the same days run one by one (the LocalExecutor path).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from tests.airflow_cluster import CeleryCluster
from tests.conftest import START, TinyRetail, comparable_hashes, run_day_direct
from tests.integration.test_backfill_scheduler import FILE_DROP_TABLES

pytestmark = [pytest.mark.airflow, pytest.mark.services, pytest.mark.usefixtures("whole_airflow"),
              pytest.mark.timeout(1200)]
DAYS = [START + timedelta(days=i) for i in range(7)]
DATES = [d.isoformat() for d in DAYS]


def test_a_7_day_backfill_on_two_celery_workers_equals_daily_runs(tiny, postgres_url, redis_url,
                                                                   tmp_path_factory):
    tiny.advance(DAYS[-1])
    with CeleryCluster(tiny.home, postgres_url, redis_url, RETAIL_API_URL=tiny.api_url,
                       RETAIL_END_DATE=DATES[-1], RETAIL_TRAIN_SCHEDULE="0 6 29 2 *") as cluster:
        cluster.unpause("retail_daily")
        cluster.backfill("retail_daily", DATES[0], DATES[-1], "--max-active-runs", "3")
        # retail_train stays paused: the backfill's single announcement is the LocalExecutor
        # test's subject; here the daily DAG's work is what is spread over the workers
        runs = cluster.wait_runs("retail_daily", DATES, 900)
        hosts = Counter(t["hostname"] for r in runs
                        for t in cluster.task_instances("retail_daily", r["dag_run_id"]) if t["hostname"])
    assert set(hosts) == {"worker1", "worker2"}, hosts  # the work was shared
    assert min(hosts.values()) >= 10, hosts
    backfilled = comparable_hashes(tiny.cfg.lake)

    other = TinyRetail(tmp_path_factory.mktemp("daily"), tiny.api_url, tiny.api_file)
    other.advance(DAYS[-1])
    for day in DAYS:
        run_day_direct(other.cfg, day)  # no model yet: scoring skips, as in the backfill
    daily = comparable_hashes(other.cfg.lake)
    # as in the LocalExecutor backfill test: a file drop may go to another concurrent day's run
    assert {t for t in daily if daily[t] != backfilled.get(t)} <= FILE_DROP_TABLES
    assert len(daily) > 30
