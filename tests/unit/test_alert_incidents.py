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
