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


@pytest.mark.parametrize(("zone", "first"), [
    ("Europe/Paris", date(2026, 3, 25)), ("Europe/Paris", date(2026, 10, 21)),  # east of UTC
    ("America/New_York", date(2026, 3, 4)), ("America/New_York", date(2026, 10, 28)),  # west
    ("Asia/Tokyo", date(2026, 3, 25)), ("UTC", date(2026, 3, 25)),
])
def test_the_daily_timetable_gives_each_business_day_once_across_dst(zone, first):
    """Scheduling across a DST change east and west of UTC: every business date once, none
    dropped, none shifted (the scheduler's logical dates are midnights in the zone)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable  # the scheduler's side

    from lakehouse.dag_factory import business_date_of


    tz = ZoneInfo(zone)
    timetable = CronDataIntervalTimetable("0 0 * * *", timezone=zone)
    start = datetime.combine(first, datetime.min.time(), tz)
    restriction = TimeRestriction(earliest=start, latest=start + timedelta(days=10), catchup=True)
    last, days = None, []
    while (info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)):
        last = info.data_interval
        days.append(business_date_of(info.logical_date, zone))
        hours = (last.end - last.start).total_seconds() / 3600
        assert hours in (23, 24, 25)
    assert days == [first + timedelta(days=i) for i in range(11)]


@pytest.mark.parametrize("zone", ["America/New_York", "America/Los_Angeles", "Europe/Paris", "Asia/Tokyo", "UTC"])
@pytest.mark.parametrize("typed", ["2013-02-04", "2026-03-08", "2026-11-01", "2026-03-29"])
def test_a_date_typed_on_the_airflow_cli_is_the_business_date_in_any_zone(zone, typed):
    """``airflow dags test DAG D`` (and ``dags trigger --logical-date D``) hand the task a
    logical date parsed by Airflow as midnight UTC; west of UTC that is the evening before in
    the domain's zone, and the run must still process D (issue 20: it processed D-1)."""
    from airflow.cli.cli_config import ARG_LOGICAL_DATE  # how `airflow dags test` parses its date

    from lakehouse.dag_factory import business_date_of

    logical = ARG_LOGICAL_DATE.kwargs["type"](typed)
    assert business_date_of(logical, zone) == date.fromisoformat(typed)


@pytest.mark.parametrize(("zone", "typed"), [
    ("America/New_York", ("2013-03-09", "2013-03-11")),  # west, across spring forward
    ("Europe/Paris", ("2013-03-30", "2013-04-01")),  # east, across spring forward
    ("Europe/Paris", ("2026-10-24", "2026-10-26")),  # east, across fall back
    ("America/Los_Angeles", ("2026-10-31", "2026-11-02")),
    ("Asia/Tokyo", ("2026-03-28", "2026-03-30")), ("UTC", ("2026-03-28", "2026-03-30")),
])
def test_a_backfill_window_typed_as_dates_runs_exactly_those_business_dates(zone, typed):
    """``airflow backfill create --from-date A --to-date B`` parses bare dates as midnight UTC;
    Airflow's own timetable then drops New York's last day and Paris' first (a window shifted
    by the offset). Ours reads such bounds in the domain's zone: every typed date, none more.
    Both the bounds and the window go through Airflow's own parser and serialization."""
    from datetime import timedelta

    from airflow.cli.cli_config import ARG_BACKFILL_FROM_DATE, ARG_BACKFILL_TO_DATE
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable

    from lakehouse.dag_factory import business_date_of
    from lakehouse.timetable import BusinessDayTimetable

    def dates(timetable, first: str, last: str) -> list[date]:
        restriction = TimeRestriction(ARG_BACKFILL_FROM_DATE.kwargs["type"](first),
                                      ARG_BACKFILL_TO_DATE.kwargs["type"](last), catchup=True)
        info, out = None, []
        while info := timetable.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction):
            out.append(business_date_of(info.logical_date, zone))
        return out

    ours = decode_timetable(encode_timetable(BusinessDayTimetable("0 0 * * *", timezone=zone)))
    assert type(ours) is BusinessDayTimetable  # found through the lakehouse plugin, as the scheduler finds it
    first, last = map(date.fromisoformat, typed)
    assert dates(ours, *typed) == [first + timedelta(days=i) for i in range((last - first).days + 1)]
    airflows = dates(CronDataIntervalTimetable("0 0 * * *", timezone=zone), *typed)
    assert (airflows == dates(ours, *typed)) == (zone in ("UTC",))  # the bug this class exists for
    # bounds typed with their offset, and the DAG's local-midnight start date, keep their meaning
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    offsets = [datetime.combine(d, datetime.min.time(), tz).isoformat() for d in (first, last)]
    assert dates(ours, *offsets) == dates(ours, *typed)
