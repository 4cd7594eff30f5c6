"""Monitoring on the real daily path: 30 stable days raise no alert, a price regime change does.

One simulated retailer, big enough for PSI to mean something (80 SKUs x 1 warehouse:
560 rows per 7-day scoring window, over ``drift_min_rows``). It is loaded on the start
date and trained; then daily runs score with the champion and, as the weekly schedule
does, training runs every Monday on the data through Sunday. For 30 days nothing
changes; then every list price rises 60% (and demand answers with an elasticity of
-1.2). Alerts go to a Slack stand-in on loopback through slack-sdk.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import polars as pl
import pytest

from lakehouse import storage, tasks
from tests.conftest import START, TINY, run_day_direct
from tests.fakes.slack import FakeSlack

STABLE_DAYS = 30
SHOCK = START + timedelta(days=STABLE_DAYS + 1)
LAST = SHOCK + timedelta(days=6)
PARAMS = dataclasses.replace(TINY, n_skus=80, n_warehouses=1, n_customers=80,
                             history_start=START - timedelta(days=160), end=LAST,
                             price_shock=(SHOCK, 1.6), dirty_rate=0.0,
                             # stock counts for every day run: with TINY's 10 days, the first 28
                             # days had no fct_inventory_daily and check_freshness rightly paged
                             inventory_from=START - timedelta(days=1))


@pytest.fixture
def slack(monkeypatch):
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
        yield fake


@pytest.mark.timeout(1200)  # ~40 days of every declared step and daily scoring, on 2 shared cores
def test_stable_days_stay_quiet_and_a_price_regime_change_alerts(tiny, slack):
    from lakehouse.config import QualityConfig

    # The ML monitors are under test. Tier-3 data checks are left out: the tiny retailer (2
    # warehouses, a few dozen orders a day) swings by more than any sane threshold from day to
    # day; their false-alarm rate is tested on controlled noise (tests/unit/test_quality.py).
    cfg = tiny.cfg.model_copy(update={"quality": QualityConfig()})
    tiny.advance(START, PARAMS)
    run_day_direct(cfg, START)
    tasks.train(cfg, START)
    alerts_by_day = {}
    day = START
    while day < LAST:
        day += timedelta(days=1)
        tiny.advance(day, PARAMS)
        before = len(slack.messages)
        if day.weekday() == 0:  # retail_train's Monday run, on the data through Sunday
            tasks.train(cfg, day - timedelta(days=1))
        # the HTML dashboard re-renders the whole run history every day (2 s and growing): it is
        # tested apart (test_health) and says nothing about the monitors under test
        run_day_direct(cfg, day, skip=("write_report",))
        alerts_by_day[day] = slack.texts()[before:]

    stable = {d: a for d, a in alerts_by_day.items() if d < SHOCK}
    assert len(stable) == STABLE_DAYS
    assert not [a for a in stable.values() if a], {d: a for d, a in stable.items() if a}

    drift = storage.scan(cfg.lake, "gold", "ml_feature_drift").with_columns(
        pl.col("forecast_date").cast(pl.Date)).collect()
    price = drift.filter(pl.col("feature") == "price").sort("forecast_date")
    quiet = price.filter(pl.col("forecast_date") < SHOCK)
    assert quiet.height == STABLE_DAYS and quiet["psi"].max() < cfg.ml.psi_threshold
    assert (quiet["rows"] >= cfg.ml.drift_min_rows).all()  # quiet for the right reason
    shocked = [d for d, a in alerts_by_day.items() if any("feature drift" in t and "price" in t for t in a)]
    # the first scoring window after the shock already carries the new prices
    assert shocked and SHOCK <= min(shocked) <= SHOCK + timedelta(days=1), alerts_by_day
    assert price.filter(pl.col("forecast_date") == LAST)["psi"].item() > 2 * cfg.ml.psi_threshold

    accuracy = storage.scan(cfg.lake, "gold", "ml_accuracy_monitor").with_columns(
        pl.col("monitor_date").cast(pl.Date)).collect()
    calm = accuracy.filter(pl.col("monitor_date") < SHOCK)
    assert calm.height and not calm["degraded"].any()
    degraded = [d for d, a in alerts_by_day.items() if any("is degrading" in t for t in a)]
    assert degraded and min(degraded) > SHOCK, alerts_by_day
