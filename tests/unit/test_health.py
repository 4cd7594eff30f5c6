"""Run history, freshness windows and the HTML health report, on tiny hand-made lakes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from lakehouse import freshness, report, runlog, storage
from lakehouse.config import load_domain
from tests.conftest import CONFIG_DIR
from tests.fakes.slack import FakeSlack

T0 = datetime(2026, 11, 1, 0, 5)


def _try(run: str, task: str, n: int, state: str, minute: int, day: str = "2026-10-31") -> dict:
    start = T0 + timedelta(minutes=minute)
    return {"dag_id": "retail_daily", "run_id": run, "run_type": "scheduled", "business_date": day,
            "task_id": task, "try_number": n, "state": state, "start": start.isoformat() + "+00:00",
            "end": (start + timedelta(seconds=30)).isoformat() + "+00:00", "seconds": 30.0,
            "error": "boom" if state != "success" else None}


def test_a_day_cleared_and_rerun_counts_as_success_and_keeps_its_retries(tmp_path):
    for entry in [_try("r1", "extract", 1, "up_for_retry", 0), _try("r1", "extract", 2, "failed", 1),
                  _try("r1", "extract", 3, "success", 60),  # cleared by hand, then succeeded
                  _try("r1", "gold", 1, "success", 61),
                  _try("r2", "extract", 1, "success", 0, "2026-11-01"),
                  _try("r2", "gold", 1, "failed", 2, "2026-11-01")]:
        runlog.record(tmp_path, entry)
    tries = runlog.read(tmp_path)
    assert tries.height == 6 and tries.schema["start"] == pl.Datetime("us", "UTC")
    runs = {r["run_id"]: r for r in runlog.run_summary(tries).iter_rows(named=True)}
    assert runs["r1"]["state"] == "success" and runs["r1"]["retries"] == 1 and runs["r1"]["tasks"] == 2
    # the rerun an hour later is an execution of its own: its 90 s, not the hour between
    assert runs["r1"]["seconds"] == pytest.approx(90) and runs["r1"]["executions"] == 2
    assert runs["r1"]["start"] == T0.replace(tzinfo=UTC) + timedelta(minutes=60)
    assert runs["r2"]["seconds"] == pytest.approx(2 * 60 + 30) and runs["r2"]["executions"] == 1
    assert runs["r2"]["state"] == "failed" and runs["r2"]["failed"] == 1
    assert runs["r2"]["business_date"] == date(2026, 11, 1)


def test_an_empty_history_reads_as_an_empty_frame(tmp_path):
    assert runlog.run_summary(runlog.read(tmp_path)).height == 0


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path / "alerts"))
    return load_domain(CONFIG_DIR)


def _publish_days(cfg, layer: str, table: str, column: str, days: list[str]) -> None:
    for d in days:
        storage.publish(pl.DataFrame({"x": [1, 2]}), cfg.lake, layer, table, {column: d})


def test_freshness_alerts_once_per_stale_table_and_recovers(cfg, monkeypatch):
    windows = {f.table: f.max_lag_days for f in cfg.freshness}
    assert windows["gold.fct_order_lines"] == 1
    _publish_days(cfg, "gold", "fct_order_lines", "order_date", ["2026-11-01", "2026-11-03"])
    with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        as_of = date(2026, 11, 5)  # two days behind, one allowed
        results = {r.table: r for r in freshness.check(cfg, as_of)}
        assert results["gold.fct_order_lines"].lag_days == 2 and not results["gold.fct_order_lines"].fresh
        assert results["gold.fct_inventory_daily"].latest is None  # never written: stale too
        outcome = freshness.alert(cfg, list(results.values()), as_of)
        assert "gold.fct_order_lines" in outcome["stale"]
        freshness.alert(cfg, freshness.check(cfg, as_of), as_of)  # the next check: no second message
        stale_texts = [t for t in slack.texts() if "fct_order_lines" in t]
        assert len(stale_texts) == 1 and "2 day(s) behind" in stale_texts[0]

        _publish_days(cfg, "gold", "fct_order_lines", "order_date", ["2026-11-05"])
        outcome = freshness.alert(cfg, freshness.check(cfg, as_of), as_of)
        assert "gold.fct_order_lines" in outcome["fresh"]
        recovered = [t for t in slack.texts() if "fct_order_lines" in t and "fresh again" in t]
        assert len(recovered) == 1


def test_report_charts_runs_volumes_and_rejects_and_marks_stale_tables(cfg):
    _publish_days(cfg, "gold", "fct_order_lines", "order_date", ["2026-10-30", "2026-10-31"])
    _publish_days(cfg, "bronze", "erp__orders", "ingest_date", ["2026-10-31"])
    storage.publish(pl.DataFrame({"entity": ["orders"] * 3, "rule": ["not_null(qty)"] * 3,
                                  "record_hash": ["h1", "h2", "h3"], "source_pointer": ["f:1", "f:2", "f:3"]}),
                    cfg.lake, "silver", "quarantine", {"entity": "orders", "ingest_date": "2026-10-31"})
    runlog.record(cfg.lake, _try("r1", "extract_erp", 1, "up_for_retry", 0))
    runlog.record(cfg.lake, _try("r1", "extract_erp", 2, "success", 1))
    from lakehouse import quality

    quality.record(cfg, "silver.orders", date(2026, 10, 31), quality.blocked("schema_drift", "x", 3), "r1")
    assert report.quality_per_day(cfg).to_dicts() == [
        {"business_date": "2026-10-31", "outcome": "tier 1: blocked", "checks": 1}]

    volumes = report.rows_per_day(cfg.lake)
    assert volumes.filter(pl.col("layer") == "gold")["rows"].to_list() == [2, 2]
    assert volumes.filter(pl.col("layer") == "quarantine")["rows"].to_list() == [3]
    assert report.rows_per_day(cfg.lake, since=date(2026, 11, 1)).is_empty()  # older partitions unread
    assert report.rows_per_day(cfg.lake, since=date(2026, 10, 31)).equals(
        volumes.filter(pl.col("date") >= date(2026, 10, 31)))

    path = report.write_report(cfg, as_of=date(2026, 10, 31))
    assert path == report.default_path(cfg) and not list(path.parent.glob(".*.tmp"))
    page = path.read_text()
    # plotly.js inlined once, no external script: the file works offline, as an attachment
    assert page.count("plotly.js v") == 1 and "<script src=" not in page.replace(" ", "")
    # runs, per task, volumes, rejects, reject rate, quality checks
    assert page.count('class="plotly-graph-div"') == 6
    assert '<td class="ok">ok</td>' in page and '<td class="stale">stale</td>' in page  # inventory never came
    assert "not_null(qty)" in page and "boom" in page  # the retry's error is listed


def test_freshness_after_a_failed_run_reports_but_opens_no_second_incident(cfg, monkeypatch):
    """The run's own failure is the incident; its stale tables are reported (the dashboard, the
    task's result) and alert on the next run that fails nothing."""
    from lakehouse import steps, tasks

    _publish_days(cfg, "gold", "fct_order_lines", "order_date", ["2026-11-01"])
    with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        failed = steps.RunContext(cfg=cfg, run_date=date(2026, 11, 5), run_id="r",
                                  failed_upstream=("silver_order_lines",))
        outcome = tasks.freshness(failed)
        assert "gold.fct_order_lines" in outcome["stale"] and outcome["quiet_because"] == ["silver_order_lines"]
        assert slack.texts() == []
        tasks.freshness(steps.RunContext(cfg=cfg, run_date=date(2026, 11, 5), run_id="r2"))
        assert any("fct_order_lines" in t and "missed its freshness window" in t for t in slack.texts())


def test_freshness_is_measured_against_yesterday_or_the_domains_end_date():
    """A domain whose schedule ended (the demo's simulated world: RETAIL_END_DATE) is not stale
    by the wall clock: no run is scheduled after its end date."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from lakehouse.config import load_domain
    from lakehouse.freshness import default_as_of
    from tests.conftest import CONFIG_DIR

    cfg = load_domain(CONFIG_DIR)
    yesterday = datetime.now(ZoneInfo(cfg.timezone)).date() - timedelta(days=1)
    assert default_as_of(cfg.model_copy(update={"end_date": None})) == yesterday
    assert default_as_of(cfg.model_copy(update={"end_date": date(2026, 11, 3)})) == min(yesterday, date(2026, 11, 3))
    assert default_as_of(cfg.model_copy(update={"end_date": yesterday + timedelta(days=30)})) == yesterday


def test_a_run_that_failed_before_its_checks_is_not_shown_as_all_pass(tmp_path):
    """status lists the newest date's checks; when the newest run failed before any check, it
    says so (naming the failed task) instead of letting an earlier date's 'all pass' stand."""
    from lakehouse import quality, status

    cfg = load_domain(CONFIG_DIR).model_copy(update={"lake_root": str(tmp_path)})
    for entry in [_try("r1", "extract_erp", 1, "success", 0), _try("r1", "build_gold", 1, "success", 1),
                  _try("r2", "extract_erp", 1, "failed", 0, "2026-11-01"),
                  _try("r2", "build_gold", 1, "upstream_failed", 1, "2026-11-01")]:
        runlog.record(tmp_path, entry)
    quality.record(cfg, "silver.orders", date(2026, 10, 31), quality._frame([
        {"check": "not_nullable", "column": "order_id", "tier": 2, "status": "pass", "failing_count": 0,
         "rows_checked": 10}]), "r1")
    checks = status.checks_summary(cfg)
    assert status.unchecked_failure(cfg, checks) == (
        "  2026-11-01  no checks recorded: the run failed before them (failed: extract_erp)")
    # once that date has checks of its own, they speak for it
    quality.record(cfg, "silver.orders", date(2026, 11, 1), quality._frame([
        {"check": "not_nullable", "column": "order_id", "tier": 2, "status": "pass", "failing_count": 0,
         "rows_checked": 10}]), "r2")
    assert status.unchecked_failure(cfg, status.checks_summary(cfg)) is None


def test_an_error_is_kept_whole_or_with_its_tail():
    short = "ConnectionError: refused"
    assert runlog.error_text(RuntimeError(short)) == short and runlog.error_text(None) is None
    long = "x" * 5000 + " Connection refused"
    kept = runlog.error_text(long)
    assert kept.startswith("x" * 1500) and kept.endswith("Connection refused") and len(kept) < 2100
    assert "[... 3,019 characters ...]" in kept


def test_the_volume_chart_breaks_its_lines_on_days_without_rows():
    volumes = pl.DataFrame({"layer": ["bronze", "bronze", "gold", "gold"], "table": ["a", "a", "f", "f"],
                            "date": [date(2026, 11, 1), date(2026, 11, 4), date(2026, 11, 1), date(2026, 11, 2)],
                            "rows": [10, 5, 0, 7]})
    grid = report.daily_grid(volumes)
    assert grid.filter(pl.col("layer") == "bronze")["rows"].to_list() == [10, None, None, 5]
    assert grid.filter(pl.col("layer") == "gold")["rows"].to_list() == [None, 7, None, None]  # 0: no point


def test_held_results_publish_per_partition_and_an_empty_one_empties_it(cfg):
    """Results held for two datasets of a day publish together; holding none for a dataset
    (an emptied partition) replaces its earlier rows with none, and other days stay."""
    from lakehouse import quality

    day, other = date(2026, 10, 31), date(2026, 10, 30)
    quality.record(cfg, "silver.orders", other, quality.blocked("row_count", "x", 3), "r0")
    quality.hold(cfg, "silver.orders", day, quality.blocked("schema_drift", "x", 3), "r1")
    quality.hold(cfg, "silver.items", day, quality.blocked("row_count", "y", 5), "r1")
    assert quality.publish_held(cfg, day) == [f"{day}/silver.items", f"{day}/silver.orders"]
    assert quality.publish_held(cfg, day) == []  # forgotten once published
    assert not Path(storage.state_path(cfg.lake, quality.HELD, day.isoformat())).exists()  # no folder a day

    def rows() -> list[tuple]:
        return sorted(quality.history(cfg).select(pl.col("business_date").cast(pl.String), "dataset", "check")
                      .collect().rows())

    assert rows() == [("2026-10-30", "silver.orders", "row_count"), ("2026-10-31", "silver.items", "row_count"),
                      ("2026-10-31", "silver.orders", "schema_drift")]
    quality.record(cfg, "silver.orders", day, quality._frame([]), "r2")
    assert rows() == [("2026-10-30", "silver.orders", "row_count"), ("2026-10-31", "silver.items", "row_count")]
