"""The simulated sources: a stable past, one day at the cost of one day, and the story's structure."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from pipelines.retail.simulator import ERP_SCHEMAS, Erp, SimulationParams, materialise

PARAMS = SimulationParams(n_skus=30, n_warehouses=3, n_customers=40, history_start=date(2026, 7, 1),
                          end=date(2026, 10, 20), inventory_from=date(2026, 10, 10),
                          incident=date(2026, 10, 15), seed=3, dirty_rate=0.01)
DAY = date(2026, 10, 20)


def sources(home: Path, params: SimulationParams, as_of: date) -> dict:
    return materialise(params, as_of, erp_url=f"sqlite:///{home}/erp.sqlite", landing=home / "landing",
                       api_file=home / "api" / "supplier_performance.parquet")


def erp_rows(home: Path, before: date | None = None) -> dict[str, list[tuple]]:
    """Every ERP table's rows as stored (text, as the database holds them), sorted; with
    ``before``, only rows changed before that day."""
    con = sqlite3.connect(home / "erp.sqlite")
    where = f" WHERE updated_at < '{before.isoformat()}'" if before else ""
    out = {t: sorted(con.execute(f'SELECT * FROM "{t}"{where}').fetchall()) for t in ERP_SCHEMAS}
    con.close()
    return out


def files(home: Path, before: date | None = None) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((home / "landing").iterdir())
            if before is None or p.stem[-8:] < f"{before:%Y%m%d}"}


def api(home: Path, before: date | None = None) -> pl.DataFrame:
    rows = pl.read_parquet(home / "api" / "supplier_performance.parquet")
    return rows if before is None else rows.filter(pl.col("updated_at") < datetime.combine(before, datetime.min.time()))


def test_simulating_further_leaves_every_earlier_day_byte_identical(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    sources(short, PARAMS, DAY)
    # a longer world (a later `end` too): the first DAY days must be the same bytes
    sources(long, dataclasses.replace(PARAMS, end=DAY + timedelta(days=30)), DAY + timedelta(days=30))
    cut = DAY + timedelta(days=1)
    assert erp_rows(short) == erp_rows(long, before=cut)
    assert all(erp_rows(short).values()), "every ERP table holds rows"
    assert files(short) == files(long, before=DAY)
    assert len(files(short)) == (DAY - PARAMS.inventory_from).days * PARAMS.n_warehouses
    assert api(short).equals(api(long, before=cut))
    assert len(files(long)) > len(files(short))


def test_advancing_one_day_costs_one_day_and_equals_simulating_from_scratch(tmp_path):
    daily, whole = tmp_path / "daily", tmp_path / "whole"
    first = sources(daily, PARAMS, DAY - timedelta(days=7))
    assert first["restarted"] and first["days_simulated"] == (DAY - timedelta(days=7) - PARAMS.history_start).days + 1
    for n in range(6, -1, -1):  # across the incident day and the day after
        step = sources(daily, PARAMS, DAY - timedelta(days=n))
        assert not step["restarted"] and step["days_simulated"] == 1, step
    again = sources(daily, PARAMS, DAY)  # idempotent: nothing to live through, nothing added
    assert again["days_simulated"] == 0 and again["order_lines_appended"] == 0
    sources(whole, PARAMS, DAY)
    assert erp_rows(daily) == erp_rows(whole)
    assert files(daily) == files(whole)
    assert api(daily).equals(api(whole))


def test_going_back_in_time_or_an_interrupted_writer_starts_the_world_again(tmp_path):
    home, fresh = tmp_path / "home", tmp_path / "fresh"
    sources(home, PARAMS, DAY)
    back = sources(home, PARAMS, DAY - timedelta(days=3))
    assert back["restarted"]
    sources(fresh, PARAMS, DAY - timedelta(days=3))
    assert erp_rows(home) == erp_rows(fresh)
    Erp(f"sqlite:///{home}/erp.sqlite").begin()  # a writer killed mid-way leaves the marker unset
    resumed = sources(home, PARAMS, DAY - timedelta(days=2))
    assert resumed["restarted"]
    sources(fresh, PARAMS, DAY - timedelta(days=2))
    assert erp_rows(home) == erp_rows(fresh)


def test_the_incident_hides_the_late_sku_until_keyed_in_and_delists_a_supplier_for_one_day(tmp_path):
    late, last_supplier = f"SKU{PARAMS.n_skus:06d}", "SUP0003"
    sources(tmp_path, PARAMS, PARAMS.incident - timedelta(days=1))
    rows = erp_rows(tmp_path)
    assert late not in {r[0] for r in rows["products"]}
    assert late in {r[2] for r in rows["order_lines"]}, "it sold before it was keyed in"
    sources(tmp_path, PARAMS, PARAMS.incident)
    rows = erp_rows(tmp_path)
    assert [r[0] for r in rows["products"]].count(late) == 1
    assert last_supplier not in {r[0] for r in rows["suppliers"]}
    sources(tmp_path, PARAMS, PARAMS.incident + timedelta(days=1))
    assert last_supplier in {r[0] for r in erp_rows(tmp_path)["suppliers"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, pl.DataFrame]:
    home = tmp_path_factory.mktemp("world")
    params = dataclasses.replace(PARAMS, n_skus=80, history_start=date(2025, 10, 1))
    sources(home, params, DAY)
    con = sqlite3.connect(home / "erp.sqlite")
    try:
        return {t: pl.read_database(f'SELECT * FROM "{t}"', con, infer_schema_length=None)
                for t in ("order_lines", "orders", "promotions")}
    finally:
        con.close()


def test_the_demand_keeps_its_weekly_season_and_promotion_effects(world):
    lines = world["order_lines"].unique("order_line_id", keep="first").join(
        world["orders"].select("order_id", pl.col("ordered_at").str.to_datetime()), on="order_id")
    by_dow = lines.group_by(pl.col("ordered_at").dt.weekday().alias("dow")).agg(pl.col("quantity").sum())
    units = dict(by_dow.iter_rows())
    assert units[6] > 1.5 * units[7], units  # Saturday sells about twice Sunday
    promo = lines.group_by(pl.col("discount_pct") > 0).agg(pl.col("quantity").sum(), pl.len())
    assert promo.height == 2, "some lines sold on promotion"


def test_promotions_are_announced_ahead_and_are_the_discounts_sold_at(world):
    promos = world["promotions"].with_columns(pl.col("starts_on", "ends_on").str.to_date(),
                                              pl.col("updated_at").str.to_datetime())
    ahead = promos.select((pl.col("starts_on").cast(pl.Datetime("us")) - pl.col("updated_at")).dt.total_hours())
    assert ahead.to_series().unique().to_list() == [14 * 24 - 9]
    lines = world["order_lines"].join(world["orders"].select("order_id", pl.col("ordered_at").str.to_datetime()),
                                      on="order_id").with_columns(day=pl.col("ordered_at").dt.date())
    sold_on_promo = lines.filter(pl.col("discount_pct") > 0).select("product_id", "day", "discount_pct").unique()
    running = (promos.with_columns(day=pl.date_ranges("starts_on", "ends_on")).explode("day")
               .group_by("product_id", "day").agg(pl.col("discount_pct").max()))
    checked = sold_on_promo.join(running, on=["product_id", "day"], how="left")
    assert checked.height > 50
    assert checked.filter(pl.col("discount_pct") != pl.col("discount_pct_right")).is_empty()


def test_late_corrections_arrive_days_after_the_line(world):
    lines = world["order_lines"].with_columns(pl.col("updated_at").str.to_datetime())
    versions = lines.group_by("order_line_id").agg(pl.len(), (pl.col("updated_at").max() - pl.col("updated_at").min())
                                                   .dt.total_days().alias("late_by"))
    corrected = versions.filter(pl.col("len") > 1)
    assert corrected.height > 0.005 * versions.height
    assert set(corrected["late_by"].to_list()) <= {1, 2, 3}
