"""retail_daily through Airflow itself (``airflow dags test``) on embedded defaults (SQLite)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest

from lakehouse import storage
from lakehouse.airflow_env import airflow, airflow_env
from tests.conftest import START
from tests.fakes.slack import FakeSlack
from tests.integration.test_pipeline import reconcile

pytestmark = pytest.mark.airflow
DAYS = [START + timedelta(days=i) for i in range(3)]


@pytest.fixture
def af_env(tiny):
    env = airflow_env(tiny.home, RETAIL_API_URL=tiny.api_url, AIRFLOW_HOME=str(tiny.home / ".airflow"))
    airflow("db", "migrate", env=env)
    return env


def _analyst(catalog: str, stop_file: str) -> subprocess.Popen:
    """A second process that keeps the catalog open read-only and queries it in a loop."""
    code = textwrap.dedent(f"""
        import os, time, duckdb
        con = duckdb.connect({catalog!r}, read_only=True)
        n = 0
        while not os.path.exists({stop_file!r}):
            n += con.execute("SELECT count(*) FROM gold.fct_order_lines").fetchone()[0] > 0
            time.sleep(0.05)
        print(n, flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_three_days_through_airflow_reconcile_rerun_and_analyst(tiny, af_env, tmp_path):
    for day in DAYS:
        tiny.advance(day)
        airflow("dags", "test", "retail_daily", day.isoformat(), env=af_env)
        if day == DAYS[0]:  # the training DAG, as its weekly run would the morning after
            airflow("dags", "test", "retail_train", (day + timedelta(days=1)).isoformat(), env=af_env)
    reconcile(tiny.cfg)
    forecast = storage.scan(tiny.cfg.lake, "gold", "fct_demand_forecast").collect()
    # the first day had no model yet (scoring skipped); the model trained on it serves from the next
    assert sorted(set(forecast["forecast_date"])) == DAYS[1:]
    before = storage.layer_hashes(tiny.cfg.lake)

    stop = tmp_path / "stop"
    analyst = _analyst(tiny.cfg.catalog_path, str(stop))
    time.sleep(1.5)  # the analyst holds the file before the run starts
    assert analyst.poll() is None, analyst.stderr.read() if analyst.stderr else ""
    airflow("dags", "test", "retail_daily", DAYS[1].isoformat(), env=af_env)  # rerun a middle day
    stop.touch()
    out, err = analyst.communicate(timeout=30)
    assert analyst.returncode == 0, err
    assert int(out.strip()) > 10  # the analyst kept querying throughout the run

    assert storage.layer_hashes(tiny.cfg.lake) == before
    _health_report_renders(tiny)
    assert_documented(tiny.cfg)


def assert_documented(cfg) -> None:
    """Every column an analyst can query in gold (tables, ML outputs, report views) has a
    comment in the catalog, and a column name shared by tables means what each table says
    (a dimension's ``name`` is its own, not another contract's)."""
    import duckdb

    from lakehouse.docs import undocumented

    with duckdb.connect(str(cfg.catalog_path), read_only=True) as con:
        assert undocumented(con) == []
        names = dict(con.execute("SELECT table_name, comment FROM duckdb_columns() WHERE schema_name = 'gold' "
                                 "AND column_name = 'name' AND table_name LIKE 'dim_%'").fetchall())
    if cfg.name == "retail":
        assert names["dim_warehouse"] == "Warehouse name" and names["dim_product"].startswith("Product name")
        assert names["dim_supplier"] == "Supplier name" and names["dim_customer"].startswith("Customer name")


def _health_report_renders(tiny) -> None:
    """Each run recorded its tasks; its last step wrote a dashboard a browser renders cleanly."""
    import polars as pl

    from lakehouse import report, runlog
    from tests import browser

    tries = runlog.read(tiny.cfg.lake)
    daily = runlog.run_summary(tries.filter(pl.col("dag_id") == "retail_daily"))
    assert set(daily["business_date"]) == set(DAYS) and set(daily["state"]) == {"success"}
    assert "train_forecast" in set(tries["task_id"])
    # each try's peak memory is its task process's: at least the interpreter with Airflow loaded
    assert tries["peak_rss_mb"].null_count() == 0 and tries["peak_rss_mb"].min() > 100, tries["peak_rss_mb"]
    path = report.default_path(tiny.cfg)
    assert path.exists()
    with browser.page() as (tab, errors):
        tab.goto(path.as_uri())
        tab.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        charts = tab.locator(".plotly-graph-div").count()
        tab.screenshot(path=str(browser.artifacts_dir() / "lakehouse_health_report.png"), full_page=True)
        text = tab.inner_text("body")
    assert errors == [] and charts == 6
    assert "retail: lakehouse health" in text and "gold.fct_order_lines" in text


def test_a_failing_quality_gate_stops_gold(tiny, af_env):
    """A batch above its quarantine threshold fails silver at once (no retries); gold never runs;
    on-call gets one quality-gate message (not a generic task failure) naming the batch and rule."""
    import sqlalchemy as sa

    tiny.advance(DAYS[0])
    engine = sa.create_engine(tiny.cfg.source("erp").url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE order_lines SET quantity = -5"))
    with FakeSlack() as slack:
        env = {**af_env, "SLACK_WEBHOOK_URL": slack.webhook_url}
        proc = airflow("dags", "test", "retail_daily", DAYS[0].isoformat(), env=env, check=False)
    assert proc.returncode != 0 or "failed" in proc.stdout.lower()
    assert "max_quarantine_rate" in proc.stdout
    assert not storage.exists(tiny.cfg.lake, "gold", "fct_order_lines")
    assert len(slack.texts()) == 1, slack.texts()  # the task's alert; the DAG run failure folds into it
    text = slack.texts()[0]
    assert text.startswith(":no_entry: quality gate blocked *retail_daily.silver_order_lines*")
    assert "bronze.erp__order_lines" in text and "max_quarantine_rate" in text and "try 1" in text
