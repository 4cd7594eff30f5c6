"""Gold: star-schema machinery (surrogate keys, point-in-time lookups, calendar) and the runner.

A gold table is defined in ``gold.yaml`` in one of three ways:

- ``sql``: a Polars SQL SELECT (dbt-model style); each table name it mentions is the gold
  table built earlier in this run or else the silver table of that name;
- ``date_dimension``: a calendar over the dates of one column;
- ``builder``: a pure Python function in ``pipelines/<domain>/gold.py`` whose keyword
  parameters name its inputs the same way (``dim_product``, ``order_lines``), plus
  ``run_date``, the business date. For what SQL can't say (as-of joins, inferred members).

The runner resolves the inputs to LazyFrames, builds lazily and publishes atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import re
from collections.abc import Callable
from datetime import date

import holidays as holidays_lib
import polars as pl

from lakehouse import storage
from lakehouse.config import DateDimension, DomainConfig, GoldTable

log = logging.getLogger(__name__)
UNKNOWN_SK = -1


def _md5_int64(values: pl.Series) -> pl.Series:
    return pl.Series(
        [int.from_bytes(hashlib.md5(v.encode()).digest()[:8], "big", signed=True) & (2**62 - 1)
         for v in values], dtype=pl.Int64)


def surrogate_key(*columns: str) -> pl.Expr:
    """A stable Int64 key from natural-key columns (MD5-based, the same in every run and version)."""
    joined = pl.concat_str([pl.col(c).cast(pl.String).fill_null("<null>") for c in columns], separator="|")
    return joined.map_batches(_md5_int64, return_dtype=pl.Int64)


def version_key(key: str) -> pl.Expr:
    """Surrogate key of an SCD2 version (needs ``version`` and ``valid_from``).

    A member's first version is keyed on the natural key alone, later versions on
    (natural key, ``valid_from``). An inferred member (see ``with_inferred_members``)
    gets the same key as the first version, so when the real record arrives the
    placeholder is completed in place and facts already pointing at it stay valid.
    """
    return (pl.when(pl.col("version") == 1).then(surrogate_key(key))
            .otherwise(surrogate_key(key, "valid_from")))


def with_inferred_members(dim: pl.LazyFrame, references: list[pl.LazyFrame], *, key: str,
                          sk: str) -> pl.LazyFrame:
    """Add a placeholder row for every ``key`` that facts reference but the dimension lacks.

    Placeholders (``is_inferred = true``) have null attributes and the member key of
    ``version_key``; they disappear, with their key taken over by the real first
    version, as soon as the member's record arrives (late-arriving dimension member).
    """
    known = dim.select(key).unique()
    missing = (pl.concat([r.select(pl.col(key)) for r in references]).drop_nulls().unique()
               .join(known, on=key, how="anti"))
    placeholders = missing.select(surrogate_key(key).alias(sk), key).with_columns(
        version=pl.lit(1, pl.Int32), is_current=pl.lit(True), is_inferred=pl.lit(True))
    return pl.concat([dim.with_columns(is_inferred=pl.lit(False)), placeholders],
                     how="diagonal_relaxed").sort(key, "version")


def point_in_time(facts: pl.LazyFrame, dim: pl.LazyFrame, *, key: str, at: str, sk: str) -> pl.LazyFrame:
    """Attach the surrogate key of the dimension version valid at each fact's ``at``.

    A fact older than the member's first known version, or whose member is only
    inferred so far, takes the member key (``version_key`` of the first version):
    the member existed, we just learnt of it late. A null natural key gets ``-1``.
    """
    versions = (dim.filter(pl.col("valid_from").is_not_null())
                .select(key, pl.col("valid_from").alias("_valid_from"), sk).sort("_valid_from"))
    member = pl.when(pl.col(key).is_not_null()).then(surrogate_key(key))
    return (
        facts.sort(at)
        .join_asof(versions, left_on=at, right_on="_valid_from", by=key, strategy="backward",
                   check_sortedness=False)
        .with_columns(pl.coalesce(sk, member, pl.lit(UNKNOWN_SK, pl.Int64)).alias(sk))
        .drop("_valid_from")
    )


def date_dimension(bounds: pl.LazyFrame, *, country: str) -> pl.LazyFrame:
    """Calendar rows between ``bounds``' ``lo`` and ``hi`` dates, with public holidays."""
    days = bounds.select(pl.date_ranges("lo", "hi").alias("date")).explode("date")
    years = range(1970, 2100)
    hol = holidays_lib.country_holidays(country, years=years)
    hol_frame = pl.LazyFrame({"date": list(hol.keys()), "holiday_name": list(hol.values())},
                             schema={"date": pl.Date, "holiday_name": pl.String})
    return days.join(hol_frame, on="date", how="left").select(
        pl.col("date").dt.strftime("%Y%m%d").cast(pl.Int32).alias("date_sk"),
        "date",
        pl.col("date").dt.year().alias("year"),
        pl.col("date").dt.quarter().alias("quarter"),
        pl.col("date").dt.month().alias("month"),
        pl.col("date").dt.week().alias("iso_week"),
        pl.col("date").dt.weekday().alias("day_of_week"),
        pl.col("date").dt.strftime("%A").alias("day_name"),
        (pl.col("date").dt.weekday() >= 6).alias("is_weekend"),
        pl.col("holiday_name").is_not_null().alias("is_holiday"),
        "holiday_name",
    ).sort("date")


def load_builder(path: str) -> Callable[..., pl.LazyFrame]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve_inputs(cfg: DomainConfig, builder: Callable[..., pl.LazyFrame], run_date: date) -> dict:
    """Map a builder's parameter names to inputs.

    ``run_date`` is the business date; a name in gold.yaml is that gold table; a gold
    table produced outside gold.yaml (ML outputs) is scanned if published, else
    ``None``; anything else is the silver table of that name.
    """
    return {name: run_date if name == "run_date" else _input(cfg, name)
            for name in inspect.signature(builder).parameters}


def _input(cfg: DomainConfig, name: str) -> pl.LazyFrame | None:
    """A gold table of gold.yaml, a gold table produced elsewhere (ML) if published, else silver."""
    if name in {g.name for g in cfg.gold}:
        return storage.scan(cfg.lake, "gold", name)
    if storage.path_exists(storage.table_dir(cfg.lake, "gold", name)):
        return storage.scan(cfg.lake, "gold", name, missing_ok=True)
    if name.startswith(("fct_", "dim_", "agg_")):
        return None
    return storage.scan(cfg.lake, "silver", name)


def sql_inputs(cfg: DomainConfig, sql: str) -> list[str]:
    """The silver and gold tables a SQL model reads: every known table name it mentions."""
    known = [g.name for g in cfg.gold] + [c.entity for c in cfg.contracts]
    return [n for n in known if re.search(rf"\b{re.escape(n)}\b", sql)]


def from_sql(cfg: DomainConfig, sql: str) -> pl.LazyFrame | None:
    """Run a SQL model lazily with Polars' SQL engine; ``None`` while an input is missing."""
    frames = {name: _input(cfg, name) for name in sql_inputs(cfg, sql)}
    if any(f is None for f in frames.values()):
        return None
    return pl.SQLContext(frames).execute(sql)


def from_date_dimension(cfg: DomainConfig, spec: DateDimension) -> pl.LazyFrame | None:
    """Calendar from the first to the last date of ``spec.column``, extended by ``spec.extend``."""
    source = _input(cfg, spec.table)
    if source is None:
        return None
    day = pl.col(spec.column).cast(pl.Date)
    bounds = source.select(day.min().alias("lo"), day.max().dt.offset_by(spec.extend).alias("hi"))
    return date_dimension(bounds, country=spec.country)


def define(cfg: DomainConfig, table: GoldTable, run_date: date) -> pl.LazyFrame | None:
    """The LazyFrame of one gold table as configured (``None``: an input does not exist yet)."""
    if table.sql is not None:
        return from_sql(cfg, table.sql)
    if table.date_dimension is not None:
        return from_date_dimension(cfg, table.date_dimension)
    builder = load_builder(table.builder or "")
    return builder(**resolve_inputs(cfg, builder, run_date))


def build_table(cfg: DomainConfig, table: GoldTable, run_date: date) -> int:
    """Build and atomically publish one gold table; returns its row count.

    A table with ``partition_by`` is recomputed whole (lazily, streamed) but only the
    partitions whose content changed are rewritten: late data touching old dates
    rewrites those dates and nothing else, and a rerun rewrites nothing.
    """
    frame = define(cfg, table, run_date)
    if frame is None:
        log.info("gold.%s: no input yet, skipped", table.name)
        return 0
    if table.partition_by:
        counts = storage.publish_partitioned(frame, cfg.lake, "gold", table.name, table.partition_by,
                                             sort_by=table.sort_by)
        log.info("gold.%s partitions: %s", table.name, counts)
    else:
        storage.publish(frame.sort(table.sort_by) if table.sort_by else frame, cfg.lake, "gold", table.name)
    rows = storage.row_count(cfg.lake, "gold", table.name)
    log.info("gold.%s: %d rows", table.name, rows)
    return rows


def build_all(cfg: DomainConfig, run_date: date) -> dict[str, int]:
    """Build every gold table in configured order (dimensions before facts).

    Gold is a function of silver alone, so concurrent runs only need to take turns: the
    last build starts after every silver table it could see was published.
    """
    with storage.locked(cfg.lake, "gold"):
        return {t.name: build_table(cfg, t, run_date) for t in cfg.gold}
