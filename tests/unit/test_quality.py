"""Tier-3 statistical checks and quality-history rows, on tiny frames."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from lakehouse import quality
from lakehouse.config import ColumnContract, EntityContract, MetricCheck, QualityConfig

METRIC = MetricCheck(name="revenue", table="fct_sales", date_column="day", group_by=["wh"], column="amount")
QC = QualityConfig()
MONDAY = date(2026, 11, 2)


def _history(run_date: date, today: dict[str, float], weeks: int = 8) -> pl.DataFrame:
    """Two warehouses; Mondays sell twice a normal day, with a little noise; ``today`` overrides."""
    rows = []
    for lag in range(7 * weeks + 2):
        day = run_date - timedelta(days=lag)
        for wh, level in (("A", 100.0), ("B", 50.0)):
            value = level * (2 if day.weekday() == 0 else 1) * (1 + 0.03 * ((lag * 7 + len(wh)) % 5 - 2))
            rows.append({"day": day, "wh": wh, "value": today.get(wh, value) if lag == 0 else value})
    return pl.DataFrame(rows)


def _status(results: pl.DataFrame) -> dict[str, tuple[str, int]]:
    return {r["check"].split(":")[1]: (r["status"], r["failing_count"]) for r in results.to_dicts()}


def test_a_usual_monday_peak_is_not_an_anomaly():
    got = _status(quality.evaluate(_history(MONDAY, {"A": 201.0}), METRIC, QC, MONDAY))
    assert got == {"zscore": ("pass", 0), "iqr": ("pass", 0), "volatility": ("pass", 0), "consensus": ("pass", 0)}


def test_the_tuesday_after_the_peak_is_not_volatile():
    tuesday = MONDAY + timedelta(days=1)
    got = _status(quality.evaluate(_history(tuesday, {"A": 99.0}), METRIC, QC, tuesday))
    assert got["volatility"] == ("pass", 0)  # -50% day over day, as every Tuesday


def test_a_spike_in_one_warehouse_is_flagged_by_every_method_and_named():
    results = quality.evaluate(_history(MONDAY, {"A": 600.0}), METRIC, QC, MONDAY)
    assert _status(results) == {"zscore": ("flagged", 1), "iqr": ("flagged", 1), "volatility": ("flagged", 1),
                                "consensus": ("flagged", 1)}
    z = results.filter(pl.col("check") == "revenue:zscore").row(0, named=True)
    assert z["metric"] > 3 and z["threshold"] == 3 and z["rows_checked"] == 2 and '"wh": "A"' in z["detail"]


def test_a_monday_priced_like_a_weekday_is_a_drop():
    got = _status(quality.evaluate(_history(MONDAY, {"B": 50.0}), METRIC, QC, MONDAY))
    assert got["zscore"] == ("flagged", 1) and got["iqr"] == ("flagged", 1)


def test_too_little_history_gives_no_verdict():
    results = quality.evaluate(_history(MONDAY, {"A": 600.0}, weeks=2), METRIC, QC, MONDAY)
    assert set(results["status"]) == {"no_baseline"}
    assert set(quality.evaluate(pl.DataFrame(), METRIC, QC, MONDAY)["status"]) == {"no_baseline"}


def test_an_ungrouped_metric_works_the_same():
    total = MetricCheck(name="orders", table="fct_sales", date_column="day", agg="count")
    frame = _history(MONDAY, {"A": 600.0}).group_by("day").agg(pl.col("value").sum())
    assert _status(quality.evaluate(frame, total, QC, MONDAY))["zscore"] == ("flagged", 1)


CONTRACT = EntityContract(
    entity="things", source="src", primary_key=["id"], max_quarantine_rate=0.3,
    columns=[ColumnContract(name="id", type="int64", nullable=False),
             ColumnContract(name="qty", type="int64", ge=1), ColumnContract(name="code", type="string")])


@pytest.mark.parametrize(("failed_rows", "status"), [(0, "pass"), (2, "pass"), (4, "blocked")])
def test_batch_results_list_every_rule_and_the_reject_rate(failed_rows, status):
    failed = pl.DataFrame({"_row": list(range(failed_rows)), "column": ["qty"] * failed_rows,
                           "rule": ["greater_than_or_equal_to(1.0)"] * failed_rows,
                           "offending_value": ["0"] * failed_rows}, schema={
        "_row": pl.UInt32, "column": pl.String, "rule": pl.String, "offending_value": pl.String})
    results = quality.batch_results(CONTRACT, 10, failed, failed_rows)
    rules = {(r["column"], r["check"]): r for r in results.to_dicts()}
    assert set(rules) == {("id", "parse"), ("id", "not_nullable"), ("qty", "parse"),
                          ("qty", "greater_than_or_equal_to(1.0)"), ("id", "multiple_fields_uniqueness"),
                          ("*", "exact_duplicate"), ("*", "quarantine_rate")}
    ge = rules[("qty", "greater_than_or_equal_to(1.0)")]
    assert ge["failing_count"] == failed_rows and ge["status"] == ("quarantined" if failed_rows else "pass")
    rate = rules[("*", "quarantine_rate")]
    assert rate["status"] == status and rate["metric"] == failed_rows / 10 and rate["tier"] == 1
    line = quality.summary(results)  # the task log's one-line summary
    assert (line == "none") == (failed_rows == 0)
    assert (f"greater_than_or_equal_to(1.0)[qty] quarantined ({failed_rows})" in line) == (failed_rows > 0)
    assert rules[("*", "exact_duplicate")]["status"] == "pass"
    copies = quality.batch_results(CONTRACT, 10, failed, failed_rows, collapsed=3)
    assert copies.filter(pl.col("check") == "exact_duplicate").select("status", "failing_count").row(0) == (
        "collapsed", 3)


def test_stable_noisy_days_page_nobody():
    """12 weeks of 20 warehouses with a weekly pattern and +-15% daily noise: some single
    methods flag now and then (they are recorded), but no group ever reaches the consensus
    that pages on-call. A real spike on the last day does."""
    import random

    rng = random.Random(11)
    start = date(2026, 8, 3)
    rows = [{"day": start + timedelta(days=d), "wh": f"W{w:02d}",
             "value": (100 + 10 * w) * (1.6 if (start + timedelta(days=d)).weekday() == 5 else 1.0)
             * rng.uniform(0.85, 1.15)} for d in range(84) for w in range(20)]
    values = pl.DataFrame(rows)
    single, paged = 0, 0
    for d in range(60, 84):
        day = start + timedelta(days=d)
        window = values.filter(pl.col("day") <= day)
        got = _status(quality.evaluate(window, METRIC, QC, day))
        single += sum(n for check, (_, n) in got.items() if check != "consensus")
        paged += got["consensus"][1]
    assert paged == 0 and single < 24 * 20 * 3 * 0.05  # under 5% of single-method verdicts, none paged
    last = start + timedelta(days=83)
    spiked = values.with_columns(pl.when((pl.col("day") == last) & (pl.col("wh") == "W03"))
                                 .then(pl.col("value") * 3).otherwise(pl.col("value")).alias("value"))
    assert _status(quality.evaluate(spiked, METRIC, QC, last))["consensus"] == ("flagged", 1)
