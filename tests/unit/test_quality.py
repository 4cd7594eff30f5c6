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


# ----------------------------------------------------------------------------- reject-rate jumps
def _rule_days(rates: list[float], rows: int = 1000, check: str = "us_registration") -> pl.DataFrame:
    """One tier-2 row a day for ``check``, oldest first, ending the day before ``MONDAY``."""
    return pl.DataFrame([{"business_date": MONDAY - timedelta(days=len(rates) - i), "check": check,
                          "column": "tailnum", "failing_count": round(r * rows), "rows_checked": rows}
                         for i, r in enumerate(rates)])


def _today(failing: int, rows: int = 1000, check: str = "us_registration") -> pl.DataFrame:
    return quality._frame([{"check": check, "column": "tailnum", "tier": 2, "status": "quarantined",
                            "failing_count": failing, "rows_checked": rows},
                           {"check": "exact_duplicate", "column": "*", "tier": 2, "status": "collapsed",
                            "failing_count": 40, "rows_checked": rows},
                           {"check": "quarantine_rate", "column": "*", "tier": 1, "status": "pass",
                            "failing_count": failing, "rows_checked": rows}])


def _jump(baseline: pl.DataFrame, today: pl.DataFrame, qc: QualityConfig = QC) -> dict:
    out = quality.reject_rate_jumps(today, baseline, qc)
    assert out["check"].to_list() == ["us_registration:reject_jump"]  # rules only, copies are no rejects
    return out.row(0, named=True)


def test_a_category_that_starts_failing_is_flagged_under_the_gate():
    """A rule at ~0.1% for four weeks that rejects 2.2% (every cancelled flight, say): far under a
    5% max_quarantine_rate, so only this check sees it, and it names the rule and the rows."""
    r = _jump(_rule_days([0.001, 0.002, 0.001, 0.0] * 7), _today(22))
    assert r["status"] == "flagged" and r["tier"] == 3 and r["failing_count"] == 22
    assert r["metric"] == pytest.approx(0.022)
    mean = sum([0.001, 0.002, 0.001, 0.0]) / 4
    assert r["threshold"] == pytest.approx(mean + QC.reject_min_increase)  # the 1-point floor binds here


def test_a_usual_rate_and_a_small_rise_pass():
    noisy = [0.02, 0.03, 0.025, 0.035, 0.02, 0.03] * 4
    assert _jump(_rule_days(noisy), _today(34))["status"] == "pass"  # 3.4%: within 3 std of 2.67%
    assert _jump(_rule_days([0.0] * 20), _today(9))["status"] == "pass"  # 0.9%: under the 1-point floor
    assert _jump(_rule_days([0.0] * 20), _today(11))["status"] == "flagged"  # 1.1% from a rule that never failed


def test_a_jump_must_beat_the_rules_own_spread():
    noisy = [0.0, 0.04] * 10  # mean 2%, std ~2.05%: 3 std above is ~8.2%
    assert _jump(_rule_days(noisy), _today(80))["status"] == "pass"
    assert _jump(_rule_days(noisy), _today(90))["status"] == "flagged"


def test_too_few_days_or_rows_give_no_verdict():
    assert _jump(_rule_days([0.0] * 3), _today(500))["status"] == "no_baseline"  # min_baseline_days=4
    assert _jump(_rule_days([0.0] * 20), _today(400, rows=499))["status"] == "no_baseline"
    assert _jump(_rule_days([0.0] * 20, check="other"), _today(500))["status"] == "no_baseline"  # a new rule


def test_a_day_with_several_batches_counts_as_one_rate():
    days = _rule_days([0.0] * 10)
    doubled = pl.concat([days, days.with_columns(pl.col("failing_count") + 1000, pl.col("rows_checked") + 1000)])
    r = _jump(doubled, _today(60))  # each day 1000 rejects of 2000 rows: 50%, so 6% is no jump
    assert r["status"] == "pass" and '"baseline_days": 10' in r["detail"]


def test_a_rule_that_rejected_nothing_passes_without_a_baseline():
    """Zero rejects cannot be a jump: a verdict (so an open incident can settle), never no_baseline."""
    assert _jump(_rule_days([0.0], check="other"), _today(0))["status"] == "pass"  # no history of its own
    assert _jump(_rule_days([0.05] * 20), _today(0))["status"] == "pass"
