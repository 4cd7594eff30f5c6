"""Incidents across days run side by side: recovery only once every failed day has succeeded."""

from __future__ import annotations

from lakehouse import alerts
from tests.fakes.slack import FakeSlack


def test_a_backfill_incident_recovers_when_its_last_failed_day_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path))
    with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        key = "task:retail_daily.extract_inventory_drop"
        for day in ("2026-11-01", "2026-11-02", "2026-11-01"):  # day 1 fails twice (a retry by hand)
            alerts.incident(key, f"failed for {day}", when=day)
        assert alerts.settle(key, "2026-10-31", "ok 10-31") is None  # a day that never failed
        assert alerts.settle(key, "2026-11-02", "ok 11-02") is None  # 11-01 still failing
        assert key in alerts.open_incidents()
        closed = alerts.settle(key, "2026-11-01", "ok 11-01")
        assert closed is not None and key not in alerts.open_incidents()
        assert slack.texts() == ["failed for 2026-11-01",
                                 "ok 11-01 Failed 3 time(s) since " + closed["opened"]
                                 + " for 2 date(s): 2026-11-01, 2026-11-02."]


def test_the_cli_reads_the_incidents_the_projects_airflow_wrote_and_says_none_only_when_true(tmp_path):
    """Without AIRFLOW_HOME a terminal finds the Airflow home the demo and the UI use (the
    project's, under LAKEHOUSE_HOME), never ~/airflow; no incident is said only when true."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_HOME", "LAKEHOUSE_ALERT_STATE")}
    env |= {"LAKEHOUSE_HOME": str(tmp_path), "SLACK_WEBHOOK_URL": ""}

    def cli() -> str:
        out = subprocess.run([sys.executable, "-m", "lakehouse.cli", "alerts"], capture_output=True, text=True,
                             env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    state = tmp_path / ".airflow" / "lakehouse_alerts" / "incidents.json"
    assert cli().startswith(f"no incident state at {state}: no alert has fired")
    # what a failing task in that Airflow home writes (its process has AIRFLOW_HOME set)
    subprocess.run([sys.executable, "-c", "from lakehouse import alerts; alerts.incident('task:x.y', 'failed')"],
                   env=env | {"AIRFLOW_HOME": str(tmp_path / ".airflow")}, check=True, timeout=300)
    assert '"task:x.y"' in cli()
    subprocess.run([sys.executable, "-m", "lakehouse.cli", "alerts", "--resolve", "task:x.y"], env=env,
                   check=True, timeout=300, capture_output=True)
    assert cli() == f"no open incidents ({state})"
