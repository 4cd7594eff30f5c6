"""Slack alerts through slack-sdk against a loopback Slack: one per incident, recovery, 429, outages."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from lakehouse import alerts
from lakehouse.airflow_env import airflow, airflow_env
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.airflow

FLAKY_DAG = textwrap.dedent('''
    import os
    from datetime import datetime, timedelta

    from airflow.sdk import DAG, task

    from lakehouse import alerts

    with DAG("flaky", start_date=datetime(2026, 1, 1), schedule=None, tags=["test"],
             default_args={"retries": 2, "retry_delay": timedelta(seconds=0),
                           "on_failure_callback": alerts.on_task_failure,
                           "on_success_callback": alerts.on_task_success},
             on_failure_callback=alerts.on_dag_failure, on_success_callback=alerts.on_dag_success):
        @task
        def extract_erp():
            if not os.path.exists(os.environ["FLAKY_FIXED"]):
                raise TimeoutError("ERP did not answer within 30 s (HTTP 504)")

        extract_erp()
''')


@pytest.fixture
def slack(tmp_path, monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    with FakeSlack() as fake:
        fake.secret = secret
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{fake.url}/services/T000/B000/{secret}")
        monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path / "alerts"))
        yield fake


DAGS_TEST = textwrap.dedent('''
    import sys
    from datetime import datetime, timezone

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(sys.argv[1]).get_dag("flaky")
    for day in sys.argv[2:]:
        run = dag.test(logical_date=datetime.fromisoformat(day).replace(tzinfo=timezone.utc))
        print(f"{day} state={run.state}", flush=True)
''')


def test_ten_broken_days_through_airflow_alert_once_and_a_fix_recovers_once(tmp_path, slack):
    """Each of 10 dates fails its 3 tries through Airflow's callbacks: 1 message, then 1 recovery."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "flaky.py").write_text(FLAKY_DAG)
    fixed = tmp_path / "fixed"
    env = airflow_env(tmp_path, AIRFLOW__CORE__DAGS_FOLDER=str(dags), FLAKY_FIXED=str(fixed),
                      AIRFLOW_HOME=str(tmp_path / ".airflow"))
    airflow("db", "migrate", env=env)
    days = [f"2026-01-{d:02d}" for d in range(1, 11)]
    # what `airflow dags test` does, once per date, in one interpreter (10 CLI start-ups cost minutes)
    failed = subprocess.run([sys.executable, "-c", DAGS_TEST, str(dags / "flaky.py"), *days], env=env,
                            capture_output=True, text=True, timeout=600)
    # the script's own lines (Airflow's INFO log says "state=failed" too)
    states = re.findall(r"^(\d{4}-\d\d-\d\d) state=(\w+)$", failed.stdout, re.M)
    assert states == [(d, "failed") for d in days], failed.stdout[-3000:] + failed.stderr[-3000:]
    outputs = [failed.stdout, failed.stderr]
    assert len(slack.messages) == 1, slack.texts()  # 30 tries, 10 DAG run failures: one message
    text = slack.texts()[0]
    assert "flaky.extract_erp" in text and "2026-01-01" in text and "try 3" in text and "HTTP 504" in text
    digest = alerts.open_incidents()["task:flaky.extract_erp"]
    assert digest["count"] == 10 and digest["dates"] == days

    fixed.touch()
    recovered = airflow("dags", "test", "flaky", "2026-01-11", env=env)
    assert len(slack.messages) == 2, slack.texts()
    assert "succeeded again" in slack.texts()[1] and "10 date(s): 2026-01-01 .. 2026-01-10" in slack.texts()[1]
    assert alerts.open_incidents() == {}
    # `dags test` runs the tasks in-process: their whole log is this output (and any log files)
    logs = [*outputs, recovered.stdout] + [p.read_text(errors="replace")
                                            for p in Path(env["AIRFLOW_HOME"]).rglob("*.log")]
    assert "HTTP 504" in outputs[0]  # the output is the task log indeed
    assert not any(slack.secret in text for text in logs)  # the webhook URL never logged


def _context(task_id: str, day: str, try_number: int = 3) -> dict:
    class TI:
        def __init__(self) -> None:
            self.task_id, self.try_number = task_id, try_number
            self.log_url = f"http://localhost:8080/dags/retail_daily/runs/x/tasks/{task_id}"

    class Dag:
        dag_id = "retail_daily"

    from datetime import datetime

    return {"ti": TI(), "dag": Dag(), "logical_date": datetime.fromisoformat(day),
            "exception": RuntimeError("HTTP 503 from the supplier API")}


def test_a_ten_day_backfill_over_a_broken_source_sends_one_message_then_one_recovery(slack):
    days = [f"2026-10-{d:02d}" for d in range(1, 11)]
    for day in days:
        alerts.on_task_failure(_context("extract_supplier_api", day))
        alerts.on_dag_failure(_context("extract_supplier_api", day))
    assert len(slack.messages) == 1, slack.texts()
    digest = alerts.open_incidents()["task:retail_daily.extract_supplier_api"]
    assert digest["count"] == 10 and digest["dates"] == days
    assert "<http://localhost:8080/dags/retail_daily" in slack.texts()[0]  # the log link
    alerts.on_task_success(_context("extract_supplier_api", "2026-10-11"))
    alerts.on_dag_success(_context("extract_supplier_api", "2026-10-11"))
    assert len(slack.messages) == 2 and "10 date(s)" in slack.texts()[1]
    assert alerts.open_incidents() == {}


def test_a_429_with_retry_after_is_waited_out_and_retried(slack):
    slack.rate_limit(1, retry_after=3)
    t0 = time.monotonic()
    assert alerts.send("hello after a rate limit")
    assert time.monotonic() - t0 >= 3
    assert [status for _, _, status in slack.requests] == [429, 200]
    assert slack.texts() == ["hello after a rate limit"]


def test_slack_rate_limiting_for_long_or_being_down_never_stalls_or_raises(slack, monkeypatch):
    slack.rate_limit(5, retry_after=120)  # longer than we are willing to wait
    t0 = time.monotonic()
    assert not alerts.send("dropped")
    assert time.monotonic() - t0 < 2 and len(slack.requests) == 1
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/T/B/x")  # nothing listens
    t0 = time.monotonic()
    alerts.notify("nobody hears this", key="drift:test")
    assert time.monotonic() - t0 < alerts.TIMEOUT_S + 1
    assert "drift:test" in alerts.open_incidents()  # kept for the digest even though undelivered


def test_chat_post_message_with_a_bot_token(slack, monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "-".join(["xoxb", "test", "token"]))  # fake, built at run time
    monkeypatch.setenv("SLACK_CHANNEL", "#data-oncall")
    monkeypatch.setenv("SLACK_API_URL", f"{slack.url}/api/")
    assert alerts.send("via the Web API")
    assert slack.messages[-1]["channel"] == "#data-oncall" and slack.messages[-1]["text"] == "via the Web API"


def test_a_statistical_anomaly_pages_once_never_blocks_and_recovers(tiny, slack):
    """Tier 3 end to end: a gold table with 9 weeks of weekday-shaped sales, then one
    warehouse at 3x: one Slack message naming the metric, the run goes on (nothing raises,
    nothing is blocked), a rerun of the day says nothing new, a normal next day recovers."""
    from datetime import timedelta

    import polars as pl

    from lakehouse import quality, storage
    from lakehouse.config import MetricCheck, QualityConfig
    from tests.unit.test_quality import MONDAY, _history

    metric = MetricCheck(name="revenue", table="fct_sales", date_column="day", group_by=["wh"],
                         column="amount")
    cfg = tiny.cfg.model_copy(update={"quality": QualityConfig(metrics=[metric])})
    spike_day, next_day = MONDAY, MONDAY + timedelta(days=1)
    sales = pl.concat([_history(spike_day, {"A": 600.0}), _history(next_day, {}).filter(
        pl.col("day") == next_day)]).rename({"value": "amount"})
    storage.publish(sales, cfg.lake, "gold", "fct_sales")

    result = quality.statistical_checks(cfg, spike_day, "run-1")
    assert result["flagged"] == {"revenue": 1}
    assert len(slack.messages) == 1 and "*revenue* looks unusual" in slack.texts()[0]
    assert "Not blocking" in slack.texts()[0]
    recorded = quality.history(cfg).filter(pl.col("tier") == 3).collect()
    # recorded, never blocking: tier 3 has no gate, the call returned and no row says blocked
    assert set(recorded["status"]) <= {"pass", "flagged"} and (recorded["status"] == "flagged").any()

    quality.statistical_checks(cfg, spike_day, "run-2")  # a rerun keeps the verdict, says nothing
    assert len(slack.messages) == 1
    quality.statistical_checks(cfg, next_day, "run-3")
    assert len(slack.messages) == 2 and "back to normal" in slack.texts()[1]
