from datetime import date, datetime

import pytest

from lakehouse.bronze import day_bounds_utc, extraction_window
from lakehouse.config import DatabaseEntity, DatabaseSource, load_domain
from tests.conftest import CONFIG_DIR

SOURCE = DatabaseSource(kind="database", name="erp", url="sqlite://", lookback_days=2,
                        entities=[DatabaseEntity(entity="t", table="t")])


@pytest.mark.parametrize("day,hours", [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25),
                                       (date(2026, 10, 24), 24)])
def test_business_days_follow_dst_without_gaps_or_overlaps(day, hours):
    start, end = day_bounds_utc(day, "Europe/Paris")
    assert (end - start).total_seconds() == hours * 3600
    next_start, _ = day_bounds_utc(date.fromordinal(day.toordinal() + 1), "Europe/Paris")
    assert next_start == end


def test_windows_initial_load_lookback_and_gap():
    cfg = load_domain(CONFIG_DIR)
    start = cfg.start_date
    assert extraction_window(cfg, SOURCE, start, None).start is None  # initial load takes everything
    day = date(start.year, start.month, start.day).fromordinal(start.toordinal() + 5)
    normal = extraction_window(cfg, SOURCE, day, datetime(2030, 1, 1))
    assert (normal.end - normal.start).days == 3  # the day plus a 2-day lookback
    widened = extraction_window(cfg, SOURCE, day, datetime.combine(start, datetime.min.time()))
    assert widened.start == datetime.combine(start, datetime.min.time())  # missed runs are caught up


@pytest.mark.parametrize("first", [date(2026, 3, 25), date(2026, 10, 21)])
def test_the_daily_timetable_gives_each_business_day_once_across_dst(first):
    """Scheduling in Europe/Paris across a DST change: every business date once, none dropped."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable  # the scheduler's side

    from lakehouse.dag_factory import _business_date_of

    tz = ZoneInfo("Europe/Paris")
    timetable = CronDataIntervalTimetable("0 0 * * *", timezone="Europe/Paris")
    start = datetime.combine(first, datetime.min.time(), tz)
    restriction = TimeRestriction(earliest=start, latest=start + timedelta(days=10), catchup=True)
    last, days = None, []
    while (info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)):
        last = info.data_interval
        days.append(_business_date_of(info.logical_date, "Europe/Paris"))
        hours = (last.end - last.start).total_seconds() / 3600
        assert hours in (23, 24, 25)
    assert days == [first + timedelta(days=i) for i in range(11)]
