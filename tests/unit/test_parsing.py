"""Column parse options: null tokens, ISO 8601 with 'Z' or offsets, user formats, zones of
naive timestamps. Expected values come from the standard library (datetime, zoneinfo)."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from lakehouse.config import ColumnContract, EntityContract, FileSource
from lakehouse.parsing import Parsing, column_parsing, parse, parse_expr
from lakehouse.silver import _quarantine_rows, split_valid, type_batch


def _utc(text: str, zone: str = "UTC") -> datetime:
    """Independent reading: Python's ISO parser, naive values in ``zone``, as naive UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC).replace(tzinfo=None)


ISO = ["2013-01-01T10:00:00Z", "2013-01-01 10:00:00", "2013-01-01T10:00:00+02:00", "2013-01-01T10:00:00-0500",
       "2013-01-01T10:00:00.123456", "2013-01-01T10:00", "2013-01-01", " 2013-07-01T23:59:59.5z "]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_iso_8601_in_every_spelling_parses_to_utc(zone):
    frame = pl.DataFrame({"t": ISO})
    values, failed = parse(frame, "t", pl.Datetime("us"), Parsing(timezone=zone))
    assert not failed.any()
    assert values.to_list() == [_utc(t.strip().replace("z", "Z"), zone) for t in ISO]
    # the lazy form (streamed version keys) reads the same values
    assert frame.select(parse_expr(pl.col("t"), pl.String, pl.Datetime("us"), Parsing(timezone=zone)))["t"].to_list() \
        == values.to_list()


def test_null_tokens_are_missing_values_not_rejects_and_other_text_still_fails():
    frame = pl.DataFrame({"n": ["1", "NA", " NA ", "", None, "x"]})
    values, failed = parse(frame, "n", pl.Int64, Parsing(null_values=("NA", "")))
    assert values.to_list() == [1, None, None, None, None, None]
    assert failed.to_list() == [False, False, False, False, False, True]


def test_a_user_format_and_a_dst_gap():
    frame = pl.DataFrame({"t": ["03/10/2024 01:30", "03/10/2024 02:30", "11/03/2024 01:30", "2024-03-10"]})
    values, failed = parse(frame, "t", pl.Datetime("us"), Parsing(formats=("%m/%d/%Y %H:%M",),
                                                                  timezone="America/New_York"))
    # 02:30 on 10 March 2024 never happened in New York: a reject, not a guess; the ambiguous
    # 01:30 of 3 November is the earlier (daylight) one; ISO text is not this column's format
    assert values.to_list() == [datetime(2024, 3, 10, 6, 30), None, datetime(2024, 11, 3, 5, 30), None]
    assert failed.to_list() == [False, True, False, True]


def test_dates_accept_iso_and_a_midnight_timestamp_and_formats():
    frame = pl.DataFrame({"d": ["2024-01-31", "2024-01-31 00:00:00", "31.01.2024"]})
    values, failed = parse(frame, "d", pl.Date, Parsing())
    assert values.to_list() == [date(2024, 1, 31)] * 2 + [None] and failed.to_list() == [False, False, True]
    values, _ = parse(frame, "d", pl.Date, Parsing(formats=("%d.%m.%Y",)))
    assert values.to_list() == [None, None, date(2024, 1, 31)]


def test_typed_source_timestamps_aware_or_naive_become_utc():
    aware = pl.DataFrame({"t": [datetime(2024, 6, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))]})
    assert parse(aware, "t", pl.Datetime("us"), Parsing())[0].to_list() == [datetime(2024, 6, 1, 10)]
    naive = pl.DataFrame({"t": [datetime(2024, 6, 1, 12)]})
    assert parse(naive, "t", pl.Datetime("us"), Parsing(timezone="Europe/Paris"))[0].to_list() == \
        [datetime(2024, 6, 1, 10)]


def test_column_options_override_the_sources():
    source = FileSource(kind="files", name="f", entity="e", landing_dir="x", null_values=["NA"],
                        timezone="Europe/Paris")
    assert column_parsing(ColumnContract(name="c", type="string"), source) == Parsing(("NA",), None, "Europe/Paris")
    country = ColumnContract(name="c", type="string", null_values=[])  # "NA" is Namibia here
    assert column_parsing(country, source).null_values == ()
    stamp = ColumnContract(name="c", type="datetime", timezone="UTC", format="%d/%m/%Y %H:%M")
    assert column_parsing(stamp, source) == Parsing(("NA",), ("%d/%m/%Y %H:%M",), "UTC")
    with pytest.raises(ValueError, match="format applies to date and datetime"):
        ColumnContract(name="c", type="int64", format="%d")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        FileSource(kind="files", name="f", entity="e", landing_dir="x", timezone="Mars/Olympus")


def test_a_reject_reason_names_the_expected_format():
    contract = EntityContract(entity="flights", source="f", primary_key=["id"], columns=[
        ColumnContract(name="id", type="string", nullable=False),
        ColumnContract(name="dep_delay", type="int64"),
        ColumnContract(name="dep_time", type="datetime", nullable=False)])
    source = FileSource(kind="files", name="f", entity="flights", landing_dir="x", null_values=["NA"],
                        timezone="America/New_York")
    raw = pl.DataFrame({"id": ["a", "b", "c"], "dep_delay": ["NA", "3", "7"],
                        "dep_time": ["2013-01-01T10:00:00Z", "2013-01-01 05:00", "Jan 1 2013"],
                        "_source_pointer": ["f.csv#row=2", "f.csv#row=3", "f.csv#row=4"],
                        "_record_hash": ["1", "2", "3"]})
    typed, failures = type_batch(raw, contract, where="t", source=source)
    valid, failed = split_valid(typed, failures, contract)
    assert valid.select("id", "dep_delay", "dep_time").rows() == [
        ("a", None, datetime(2013, 1, 1, 10)), ("b", 3, datetime(2013, 1, 1, 10))]
    reason = _quarantine_rows(raw, failed, "run", contract)["reason"].to_list()
    assert reason == ["dep_time is not a datetime in ISO 8601 (2024-01-31T13:45:00, optional fraction, 'Z' or "
                      "an offset such as +01:00; without one, in America/New_York) (value: Jan 1 2013)"]
