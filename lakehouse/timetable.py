"""The daily timetable of a domain: business days in the domain's time zone, also for backfills.

Airflow's ``CronDataIntervalTimetable`` in the domain's zone gives each business day one run
whose logical date is that day's local midnight. But ``airflow backfill create --from-date
2013-03-09 --to-date 2013-03-11`` parses its bare dates as midnight UTC, so outside UTC the
window is shifted by the zone's offset: New York lost its last day (03-11 starts at 04:00
UTC, after the bound), Paris its first (03-09 starts at 23:00 UTC on 03-08, before it), and
the CLI said nothing. Airflow reads such bounds in the timetable's zone only for partitioned
timetables; this subclass does the same for ours: a window bound that falls exactly on a UTC
midnight is read as that date's midnight in the domain's zone. A local midnight (the DAG's
start date, a bound typed with its offset) is never a UTC midnight unless the zone is at
UTC+0 that day, where both readings are one instant. Registered through the ``lakehouse``
Airflow plugin (``lakehouse.airflow_plugin``), as Airflow requires of custom timetables.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable


def local_midnight_of_utc_date(bound: datetime | None, tz) -> datetime | None:
    """``bound`` if it is not a UTC midnight; else the same calendar date's midnight in ``tz``."""
    if bound is None:
        return None
    utc = bound.astimezone(UTC)
    if utc.time() != datetime.min.time():
        return bound
    import pendulum

    return pendulum.datetime(utc.year, utc.month, utc.day, tz=tz)


class BusinessDayTimetable(CronDataIntervalTimetable):
    """``CronDataIntervalTimetable`` whose bare-date window bounds mean the domain's dates."""

    def next_dagrun_info(self, *, last_automated_data_interval: DataInterval | None,
                         restriction: TimeRestriction) -> DagRunInfo | None:
        local = TimeRestriction(earliest=local_midnight_of_utc_date(restriction.earliest, self._timezone),
                                latest=local_midnight_of_utc_date(restriction.latest, self._timezone),
                                catchup=restriction.catchup)
        return super().next_dagrun_info(last_automated_data_interval=last_automated_data_interval,
                                        restriction=local)
