"""Source values -> a contract's types, with each column's parse options (null tokens, date
and timestamp formats, the zone of naive timestamps).

A source hands over text (CSV, JSON) or loosely typed values (Parquet, a database); silver
stores every timestamp as naive UTC. What a column accepts is written once, here, and the
same text is used in a reject's reason, so a value that does not parse says what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakehouse.config import ColumnContract, SourceModel

# ISO 8601 after normalising (``normalised_iso``): a 'T' or a blank between date and time, an
# optional fraction (``%.f``), 'Z' or an offset (``%z`` takes +01:00 and +0100); a date alone
# is midnight. Tried in this order, and only while some value is still unparsed.
ISO_DATETIME = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M%z",
                "%Y-%m-%d")
# spreadsheets hand dates over as "YYYY-MM-DD 00:00:00"
ISO_DATE = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M")
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class Parsing:
    """How one column's values are read: ``formats`` None means ISO 8601."""

    null_values: tuple[str, ...] = ()
    formats: tuple[str, ...] | None = None
    timezone: str = "UTC"

    def expected(self, dtype: str) -> str:
        """What a value of ``dtype`` must look like, for a reject's reason."""
        if dtype in ("date", "datetime"):
            if self.formats:
                shown = " or ".join(repr(f) for f in self.formats)
                return f"a {dtype} in format {shown}" + (f" (naive values in {self.timezone})"
                                                          if dtype == "datetime" else "")
            if dtype == "date":
                return "a date in ISO 8601 (2024-01-31)"
            return ("a datetime in ISO 8601 (2024-01-31T13:45:00, optional fraction, 'Z' or an offset "
                    f"such as +01:00; without one, in {self.timezone})")
        return {"int64": "an integer", "float64": "a number", "bool": f"one of {', '.join(BOOLEANS)}",
                "string": "text"}[dtype]


def column_parsing(column: ColumnContract, source: SourceModel | None) -> Parsing:
    """The column's options, falling back to its source's (null tokens, zone), else the defaults."""
    nulls = column.null_values if column.null_values is not None else (source.null_values if source else [])
    zone = column.timezone or (source.timezone if source else "UTC")
    formats = column.formats
    return Parsing(tuple(nulls), tuple(formats) if formats else None, zone)


def without_null_tokens(src: pl.Expr, source: pl.DataType, parsing: Parsing) -> pl.Expr:
    """``src`` with its null tokens (compared trimmed) made null; non-text values are kept."""
    if not parsing.null_values or source != pl.String:
        return src
    return pl.when(src.str.strip_chars().is_in(list(parsing.null_values))).then(None).otherwise(src)


def _to_utc(expr: pl.Expr, aware: bool, zone: str) -> pl.Expr:
    """A parsed timestamp as naive UTC: an aware one converted, a naive one read in ``zone``
    (a wall time skipped by a DST change is no time at all: null, so a reject)."""
    if aware:
        return expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    if zone == "UTC":
        return expr
    return (expr.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC").dt.replace_time_zone(None))


def normalised_iso(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text in the one spelling ``ISO_DATETIME`` reads: trimmed, 'T' -> ' ', 'Z' -> +00:00."""
    return (text.str.strip_chars().str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt]", "${1} ")
            .str.replace(r"[Zz]$", "+00:00"))


def candidates(src: pl.Expr, source: pl.DataType, target: pl.DataType, parsing: Parsing) -> list[pl.Expr]:
    """Expressions of the target type, each null where its reading does not apply; the value
    is the first non-null of them (``pl.coalesce``), and null in all means it does not parse."""
    if source != pl.String:
        if isinstance(source, pl.Datetime) and target == pl.Datetime("us"):
            return [_to_utc(src, source.time_zone is not None, parsing.timezone).cast(target)]
        return [src.cast(target, strict=False)]
    if target == pl.Datetime("us"):
        text = src.str.strip_chars() if parsing.formats else normalised_iso(src)
        return [_to_utc(text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone=None, exact=True),
                        "%z" in fmt or "%:z" in fmt or "%#z" in fmt, parsing.timezone)
                for fmt in parsing.formats or ISO_DATETIME]
    if target == pl.Date:
        text = src.str.strip_chars() if parsing.formats else normalised_iso(src)
        return [text.str.to_datetime(fmt, strict=False, time_unit="us", exact=True).dt.date()
                if "%H" in fmt else text.str.to_date(fmt, strict=False, exact=True)
                for fmt in parsing.formats or ISO_DATE]
    if target == pl.Boolean:
        return [src.str.strip_chars().str.to_lowercase().replace_strict(
            BOOLEANS, default=None, return_dtype=pl.Boolean)]
    if target == pl.String:
        return [src]  # text is kept as sent: blanks can be data (a comment that starts with one)
    return [src.str.strip_chars().cast(target, strict=False)]


def parse_expr(src: pl.Expr, source: pl.DataType, target: pl.DataType, parsing: Parsing) -> pl.Expr:
    """Lazy form of ``parse`` (every reading is evaluated): for streamed passes such as keys."""
    readings = candidates(without_null_tokens(src, source, parsing), source, target, parsing)
    return readings[0] if len(readings) == 1 else pl.coalesce(readings)


def parse(frame: pl.DataFrame, name: str, target: pl.DataType, parsing: Parsing) -> tuple[pl.Series, pl.Series]:
    """Column ``name`` of ``frame`` read as ``target``: returns (values, failed), ``failed``
    true where a value was present (not null, not a null token) and does not parse.

    Readings are tried in order and only while some present value is still unparsed: a
    column in the first format (nearly every one) is parsed once.
    """
    source = frame.schema[name]
    present = frame.select(without_null_tokens(pl.col(name), source, parsing).alias(name))
    wanted = present.get_column(name).null_count()
    values: pl.Series | None = None
    for reading in candidates(pl.col(name), source, target, parsing):
        parsed = present.select(reading.alias(name)).get_column(name)
        values = parsed if values is None else values.fill_null(parsed)
        if values.null_count() == wanted:
            break
    assert values is not None
    return values, present.get_column(name).is_not_null() & values.is_null()
