"""Deterministic, seeded simulator of a retailer's source systems.

The story: a supply-chain team with ~10,000 SKUs in 12 warehouses deciding on
48-hour-old Excel exports. The simulator draws one complete timeline (products
and their price/category changes, customers who move, daily demand with weekly
and yearly seasonality, trend, promotions with price effects, holidays and
stockouts) and then *materialises* the sources as they would look on a given day:

* an ERP database (any SQLAlchemy URL; SQLite by default),
* supplier performance served by the REST API in ``api_server.py``,
* daily inventory count files per warehouse (CSV and .xlsx) in a landing folder.

Everything is a pure function of ``SimulationParams``: the same parameters give
byte-identical sources.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path

import holidays as holidays_lib
import numpy as np
import polars as pl

CATEGORIES = ["beverages", "snacks", "dairy", "produce", "household", "personal_care", "frozen", "bakery"]
CITIES = ["Lyon", "Lille", "Nantes", "Toulouse", "Bordeaux", "Marseille", "Paris", "Nice", "Rennes",
          "Strasbourg", "Dijon", "Grenoble"]
COUNTRIES = ["FR", "DE", "ES", "IT", "NL", "PL"]


@dataclass(frozen=True)
class SimulationParams:
    """Scale and window of the simulated retailer. ``seed scale`` is 10,247 x 12."""

    n_skus: int = 120
    n_warehouses: int = 4
    n_customers: int = 400
    history_start: date = date(2024, 9, 1)
    end: date = date(2026, 11, 3)
    inventory_days: int = 45
    seed: int = 7
    dirty_rate: float = 0.002  # share of order lines / count rows that break a contract
    # a price regime change: from this day every list price is multiplied by the factor
    # and demand answers with an elasticity of -1.2 (drift-monitoring tests)
    price_shock: tuple[date, float] | None = None

    @property
    def days(self) -> list[date]:
        n = (self.end - self.history_start).days + 1
        return [self.history_start + timedelta(days=i) for i in range(n)]


class RetailWorld:
    """The full simulated timeline; ``as_of(day)`` views are cut from it."""

    def __init__(self, params: SimulationParams) -> None:
        self.p = params
        self.days = params.days  # computed once: the simulator indexes it per product change
        self.rng = np.random.default_rng(params.seed)

    # ------------------------------------------------------------------ dimensions
    @cached_property
    def warehouses(self) -> pl.DataFrame:
        n = self.p.n_warehouses
        return pl.DataFrame({
            "warehouse_id": [f"WH{i + 1:02d}" for i in range(n)],
            "name": [f"{CITIES[i % len(CITIES)]} DC" for i in range(n)],
            "city": [CITIES[i % len(CITIES)] for i in range(n)],
            "region": ["north" if i % 2 else "south" for i in range(n)],
            "updated_at": [datetime(2020, 1, 1)] * n,
        })

    @cached_property
    def suppliers(self) -> pl.DataFrame:
        n = max(3, self.p.n_skus // 25)
        rng = np.random.default_rng(self.p.seed + 1)
        return pl.DataFrame({
            "supplier_id": [f"SUP{i + 1:04d}" for i in range(n)],
            "name": [f"Supplier {i + 1}" for i in range(n)],
            "country": [COUNTRIES[i % len(COUNTRIES)] for i in range(n)],
            "lead_time_days": rng.integers(2, 9, n).astype("int64"),
            "updated_at": [datetime(2020, 1, 1)] * n,
        })

    @cached_property
    def _product_base(self) -> pl.DataFrame:
        n = self.p.n_skus
        rng = np.random.default_rng(self.p.seed + 2)
        n_sup = self.suppliers.height
        return pl.DataFrame({
            "product_id": [f"SKU{i + 1:06d}" for i in range(n)],
            "name": [f"Product {i + 1}" for i in range(n)],
            "category": [CATEGORIES[i % len(CATEGORIES)] for i in range(n)],
            "supplier_id": [f"SUP{(i % n_sup) + 1:04d}" for i in range(n)],
            "unit_price": np.round(rng.lognormal(1.2, 0.6, n) + 0.5, 2),
            "base_demand": rng.lognormal(0.6, 0.7, n),
        })

    @cached_property
    def product_versions(self) -> pl.DataFrame:
        """Every version of every product with the moment it became true (``updated_at``)."""
        rng = np.random.default_rng(self.p.seed + 3)
        base = self._product_base
        span = len(self.days)
        rows = []
        created = datetime.combine(self.p.history_start - timedelta(days=30), datetime.min.time())
        for rec in base.iter_rows(named=True):
            version = {k: rec[k] for k in ("product_id", "name", "category", "supplier_id", "unit_price")}
            version |= {"is_discontinued": False, "updated_at": created}
            rows.append(dict(version))
            n_changes = int(rng.integers(0, 4))
            for day in sorted(rng.integers(1, span, n_changes)):
                at = datetime.combine(self.days[day], datetime.min.time()) + timedelta(
                    seconds=int(rng.integers(8 * 3600, 18 * 3600)))
                kind = rng.random()
                if kind < 0.75:
                    version["unit_price"] = round(version["unit_price"] * float(rng.uniform(0.9, 1.15)), 2)
                elif kind < 0.9:
                    version["category"] = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
                else:
                    version["is_discontinued"] = True
                version["updated_at"] = at
                rows.append(dict(version))
                if version["is_discontinued"]:
                    break
        versions = pl.DataFrame(rows).sort("product_id", "updated_at")
        return versions if self.p.price_shock is None else self._shock_prices(versions)

    def _shock_prices(self, versions: pl.DataFrame) -> pl.DataFrame:
        """Re-price every product at the shock: a new version then, later versions scaled too."""
        day, factor = self.p.price_shock
        at = datetime.combine(day, datetime.min.time()) + timedelta(hours=6)
        before = versions.filter(pl.col("updated_at") < at)
        repriced = (before.group_by("product_id").agg(pl.all().sort_by("updated_at").last())
                    .filter(~pl.col("is_discontinued")).with_columns(updated_at=pl.lit(at)))
        after = pl.concat([repriced.select(versions.columns), versions.filter(pl.col("updated_at") >= at)])
        after = after.with_columns((pl.col("unit_price") * factor).round(2))
        return pl.concat([before, after]).sort("product_id", "updated_at")

    @cached_property
    def customer_versions(self) -> pl.DataFrame:
        rng = np.random.default_rng(self.p.seed + 4)
        created = datetime.combine(self.p.history_start - timedelta(days=60), datetime.min.time())
        rows = []
        for i in range(self.p.n_customers):
            version = {
                "customer_id": f"CUS{i + 1:06d}",
                "name": f"Customer {i + 1}",
                "segment": ["retail", "horeca", "wholesale"][i % 3],
                "city": CITIES[int(rng.integers(0, len(CITIES)))],
                "email": f"customer{i + 1}@example.com",
                "is_deleted": False,
                "updated_at": created,
            }
            rows.append(dict(version))
            if rng.random() < 0.15:
                day = self.days[int(rng.integers(1, len(self.days)))]
                version["city"] = CITIES[int(rng.integers(0, len(CITIES)))]
                version["updated_at"] = datetime.combine(day, datetime.min.time()) + timedelta(hours=11)
                rows.append(dict(version))
            # some accounts are closed (flagged deleted); half of those are reopened later
            if i > 0 and rng.random() < 0.06:
                closed = max(version["updated_at"], datetime.combine(
                    self.days[int(rng.integers(1, len(self.days)))], datetime.min.time())) + timedelta(hours=15)
                rows.append(version | {"is_deleted": True, "updated_at": closed})
                if rng.random() < 0.5:
                    rows.append(version | {"updated_at": closed + timedelta(days=int(rng.integers(5, 40)))})
        return pl.DataFrame(rows).sort("customer_id", "updated_at")

    # ------------------------------------------------------------------ demand and stock
    @cached_property
    def daily(self) -> pl.DataFrame:
        """Units sold per (day, product, warehouse), with price, promo and closing stock."""
        p, rng = self.p, np.random.default_rng(self.p.seed + 5)
        days = self.days
        n_d, n_s, n_w = len(days), p.n_skus, p.n_warehouses
        base = self._product_base
        cat_idx = np.array([CATEGORIES.index(c) for c in base["category"]])
        dow = np.array([d.weekday() for d in days])
        doy = np.array([d.timetuple().tm_yday for d in days])
        t = np.arange(n_d) / 365.0
        weekly = np.array([[1.0, 0.95, 0.95, 1.0, 1.15, 1.35, 0.65]]) * np.ones((len(CATEGORIES), 1))
        weekly[CATEGORIES.index("bakery")] = [1.0, 1.0, 1.0, 1.0, 1.1, 1.5, 1.3]
        amp = np.linspace(0.15, 0.45, len(CATEGORIES))
        phase = np.linspace(0, 300, len(CATEGORIES))
        hol = holidays_lib.country_holidays("FR", years=range(days[0].year, days[-1].year + 1))
        is_hol = np.array([d in hol for d in days])
        season = 1 + amp[cat_idx][None, :] * np.sin(2 * math.pi * (doy[:, None] - phase[cat_idx][None, :]) / 365)
        week = weekly[cat_idx][:, dow].T  # (days, skus)
        trend = (1 + 0.12 * t)[:, None]
        holiday = np.where(is_hol, 0.6, 1.0)[:, None]
        # pre-holiday rush: the day before a holiday sells 30% more
        pre_hol = np.where(np.roll(is_hol, -1), 1.3, 1.0)[:, None]
        promo = rng.random((n_d, n_s)) < 0.04
        promo = promo | np.roll(promo, 1, axis=0) | np.roll(promo, 2, axis=0)  # 3-day promos
        discount = np.where(promo, rng.choice([0.1, 0.2, 0.3], (n_d, n_s)), 0.0)
        uplift = (1 - discount) ** -2.5
        lam_sku = base["base_demand"].to_numpy()[None, :] * season * week * trend * holiday * pre_hol * uplift
        wh_factor = rng.uniform(0.6, 1.4, n_w)
        lam = lam_sku[:, :, None] * wh_factor[None, None, :]  # (d, s, w)
        if p.price_shock is not None:
            shocked = np.array([d >= p.price_shock[0] for d in days])
            lam[shocked] *= p.price_shock[1] ** -1.2
        # discontinued products stop selling from their discontinuation day
        disc = self.product_versions.filter(pl.col("is_discontinued"))
        day_index = {d: i for i, d in enumerate(days)}
        sku_index = {s: i for i, s in enumerate(base["product_id"])}
        for sku, at in disc.select("product_id", "updated_at").iter_rows():
            lam[day_index.get(at.date(), n_d):, sku_index[sku], :] = 0
        demand = rng.poisson(lam)
        lead = self.suppliers["lead_time_days"].to_numpy()[
            np.array([int(s[3:]) - 1 for s in base["supplier_id"]])]
        avg = lam.mean(axis=0) + 0.05
        stock = np.ceil(avg * 14).astype(np.int64)
        pipeline = np.zeros((n_d + 20, n_s, n_w), dtype=np.int64)
        pending = np.zeros((n_s, n_w), dtype=bool)
        sold = np.zeros_like(demand)
        closing = np.zeros_like(demand)
        failures = rng.random((n_d, n_s)) < 0.01  # supplier misses a delivery
        for i in range(n_d):
            arriving = pipeline[i]
            stock += arriving
            pending &= ~(arriving > 0)
            sold[i] = np.minimum(demand[i], stock)
            stock -= sold[i]
            closing[i] = stock
            need = (stock < avg * 7) & ~pending
            qty = np.ceil(avg * 21).astype(np.int64)
            arrival = i + lead[:, None] + np.where(failures[i][:, None], 7, 0)
            s_i, w_i = np.nonzero(need)
            np.add.at(pipeline, (arrival[s_i, 0], s_i, w_i), qty[s_i, w_i])
            pending |= need
        d_idx, s_idx, w_idx = np.meshgrid(np.arange(n_d), np.arange(n_s), np.arange(n_w), indexing="ij")
        # gather ids in Polars: a numpy object array of strings is slow at seed scale (49 M cells)
        return pl.DataFrame({
            "day": pl.Series(np.array(days, dtype="datetime64[D]")).gather(d_idx.ravel()),
            "product_id": base["product_id"].gather(s_idx.ravel()),
            "warehouse_id": self.warehouses["warehouse_id"].gather(w_idx.ravel()),
            "units": sold.ravel(),
            "closing_stock": closing.ravel(),
            "discount_pct": discount[d_idx.ravel(), s_idx.ravel()],
        }).with_columns(pl.col("day").cast(pl.Date))

    # ------------------------------------------------------------------ orders
    @cached_property
    def order_lines(self) -> pl.DataFrame:
        """Order lines with every version (corrections arrive days later)."""
        rng = np.random.default_rng(self.p.seed + 6)
        sold = self.daily.filter(pl.col("units") > 0)
        n_lines = np.ceil(sold["units"].to_numpy() / 2).astype(np.int64)
        cell = np.repeat(np.arange(sold.height), n_lines)
        first = np.r_[0, np.cumsum(n_lines)[:-1]]
        pos = np.arange(cell.size) - first[cell]
        units = sold["units"].to_numpy()[cell]
        qty = np.where(pos == n_lines[cell] - 1, units - 2 * (n_lines[cell] - 1), 2)
        lines = sold[cell].select("day", "product_id", "warehouse_id", "discount_pct").with_columns(
            quantity=pl.Series(qty, dtype=pl.Int64)).sort("day", "warehouse_id", "product_id")
        # lines of one (day, warehouse) are grouped into orders of ~3 lines
        lines = lines.with_columns(
            _grp=pl.int_range(pl.len()).over("day", "warehouse_id") // 3,
            order_line_id=pl.format("OL{}", pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(9)),
        )
        orders = lines.select("day", "warehouse_id", "_grp").unique(maintain_order=True)
        n_o = orders.height
        orders = orders.with_columns(
            order_id=pl.format("O{}", pl.int_range(1, n_o + 1).cast(pl.String).str.zfill(8)),
            customer_id=pl.Series([f"CUS{i + 1:06d}" for i in rng.integers(0, self.p.n_customers, n_o)]),
            ordered_at=pl.col("day").cast(pl.Datetime("us")) + pl.duration(
                seconds=pl.Series(rng.integers(7 * 3600, 21 * 3600, n_o))),
        )
        # a closed account places no orders: those go to the first customer, never closed
        status = self.customer_versions.select("customer_id", "updated_at", "is_deleted").sort("updated_at")
        orders = orders.sort("ordered_at").join_asof(
            status, left_on="ordered_at", right_on="updated_at", by="customer_id", strategy="backward",
            check_sortedness=False,
        ).with_columns(customer_id=pl.when(pl.col("is_deleted")).then(pl.lit("CUS000001"))
                       .otherwise(pl.col("customer_id"))).drop("updated_at", "is_deleted").sort("order_id")
        lines = lines.join(orders.select("day", "warehouse_id", "_grp", "order_id", "ordered_at"),
                           on=["day", "warehouse_id", "_grp"]).drop("_grp")
        prices = self.product_versions.select("product_id", "updated_at", "unit_price").sort("updated_at")
        lines = lines.sort("ordered_at").join_asof(
            prices, left_on="ordered_at", right_on="updated_at", by="product_id", strategy="backward",
            check_sortedness=False,
        ).with_columns(
            unit_price=(pl.col("unit_price") * (1 - pl.col("discount_pct"))).round(2),
            updated_at=pl.col("ordered_at") + pl.duration(minutes=5),
        ).drop("updated_at_right", strict=False)
        n = lines.height
        dirty = rng.random(n) < self.p.dirty_rate
        lines = lines.with_columns(
            quantity=pl.when(pl.Series(dirty)).then(-pl.col("quantity")).otherwise(pl.col("quantity")))
        # 1% of lines are corrected 1-3 days later (quantity re-keyed): late-arriving changes
        corrected = rng.random(n) < 0.01
        corrections = lines.filter(pl.Series(corrected) & ~pl.Series(dirty)).with_columns(
            quantity=pl.col("quantity") + 1,
            updated_at=pl.col("updated_at") + pl.duration(days=pl.lit(1) + pl.col("quantity") % 3),
        )
        cols = ["order_line_id", "order_id", "product_id", "warehouse_id", "quantity", "unit_price",
                "discount_pct", "updated_at"]
        self.orders = orders.select(
            "order_id", "customer_id", "warehouse_id", "ordered_at",
            pl.lit("confirmed").alias("status"), pl.col("ordered_at").alias("updated_at"))
        return pl.concat([lines.select(cols), corrections.select(cols)]).sort("order_line_id", "updated_at")

    @cached_property
    def supplier_performance(self) -> pl.DataFrame:
        rng = np.random.default_rng(self.p.seed + 7)
        sup = self.suppliers
        days = self.days
        n = sup.height * len(days)
        return pl.DataFrame({
            "supplier_id": np.tile(sup["supplier_id"].to_numpy(), len(days)),
            "performance_date": np.repeat(np.array(days, dtype="datetime64[D]"), sup.height),
            "lead_time_days": np.tile(sup["lead_time_days"].to_numpy(), len(days)) + rng.integers(-1, 3, n),
            "fill_rate": np.round(np.clip(rng.normal(0.95, 0.04, n), 0.5, 1.0), 3),
        }).with_columns(
            pl.col("performance_date").cast(pl.Date),
            updated_at=pl.col("performance_date").cast(pl.Datetime("us")) + pl.duration(hours=26),
        )

    @cached_property
    def inventory_counts(self) -> pl.DataFrame:
        """End-of-day stock counts for the last ``inventory_days`` days."""
        rng = np.random.default_rng(self.p.seed + 8)
        first = self.p.end - timedelta(days=self.p.inventory_days - 1)
        counts = self.daily.filter(pl.col("day") >= first).select(
            pl.col("day").alias("count_date"), "warehouse_id", pl.col("product_id").alias("sku"),
            pl.col("closing_stock").alias("on_hand"))
        dirty = rng.random(counts.height) < self.p.dirty_rate
        return counts.with_columns(
            on_hand=pl.when(pl.Series(dirty)).then(pl.lit(-1, pl.Int64)).otherwise(pl.col("on_hand")))

    # ------------------------------------------------------------------ as-of views
    def erp_as_of(self, day: date) -> dict[str, pl.DataFrame]:
        """ERP tables as the database holds them at the end of ``day``.

        Products, customers and order lines are system-versioned: every row version
        stays with its ``updated_at`` (as a temporal table or a CDC feed exposes them),
        so extraction by change time never misses an intermediate version. Suppliers
        are a plain table: the last supplier is hard-deleted (delisted) for one day,
        two days before ``end``. The last SKU's record is keyed into the ERP only on
        that day, although it sold before: facts meet it as an inferred member first.
        """
        cutoff = datetime.combine(day + timedelta(days=1), datetime.min.time())
        _ = self.order_lines  # builds self.orders
        incident = self.p.end - timedelta(days=2)
        late_sku = self._product_base["product_id"][-1]
        products = self.product_versions.filter(pl.col("updated_at") < cutoff)
        if day < incident:
            products = products.filter(pl.col("product_id") != late_sku)
        else:
            keyed_in = datetime.combine(incident, datetime.min.time()) + timedelta(hours=10)
            late = (products.filter(pl.col("product_id") == late_sku).sort("updated_at").tail(1)
                    .with_columns(updated_at=pl.max_horizontal("updated_at", pl.lit(keyed_in))))
            products = pl.concat([products.filter(pl.col("product_id") != late_sku), late])
        suppliers = self.suppliers.drop("lead_time_days")
        if day == incident:
            suppliers = suppliers.head(-1)
        return {
            "warehouses": self.warehouses,
            "suppliers": suppliers,
            "products": products.sort("product_id", "updated_at"),
            "customers": self.customer_versions.filter(pl.col("updated_at") < cutoff),
            "orders": self.orders.filter(pl.col("updated_at") < cutoff),
            "order_lines": self.order_lines.filter(pl.col("updated_at") < cutoff),
        }


# ---------------------------------------------------------------------- materialisation
def write_erp(tables: dict[str, pl.DataFrame], url: str) -> None:
    """Replace the ERP tables at ``url`` (any SQLAlchemy URL) in one transaction."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    type_map = {pl.String: sa.String, pl.Int64: sa.BigInteger, pl.Float64: sa.Float,
                pl.Boolean: sa.Boolean, pl.Datetime("us"): sa.DateTime, pl.Date: sa.Date}
    meta = sa.MetaData()
    with engine.begin() as conn:
        for name, df in tables.items():
            cols = [sa.Column(c, type_map.get(t, sa.String)) for c, t in df.schema.items()]
            table = sa.Table(name, meta, *cols)
            if "updated_at" in df.columns:
                # as an ERP does: extracts select a window of change times, which an index
                # makes cost the window rather than the table's whole history
                sa.Index(f"ix_{name}_updated_at", table.c.updated_at)
            table.drop(conn, checkfirst=True)
            table.create(conn)
            for chunk in df.iter_slices(50_000):
                conn.execute(table.insert(), chunk.to_dicts())
    engine.dispose()


def write_inventory_files(counts: pl.DataFrame, landing: Path, up_to: date) -> int:
    """Drop one count file per warehouse and day; even warehouses send CSV, odd ones .xlsx.

    Each file is counted at the end of its day and lands the next morning (06:00 UTC):
    its modification time is that arrival moment. Existing files are left alone.
    """
    landing.mkdir(parents=True, exist_ok=True)
    written = 0
    for (wh, day), part in counts.filter(pl.col("count_date") < up_to).group_by(
            "warehouse_id", "count_date", maintain_order=True):
        ext = "csv" if int(wh[2:]) % 2 == 0 else "xlsx"
        path = landing / f"inventory_{wh}_{day:%Y%m%d}.{ext}"
        if path.exists():
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        out = part.select("count_date", "warehouse_id", "sku", "on_hand")
        if ext == "csv":
            out.write_csv(tmp)
        else:
            out.write_excel(tmp, worksheet="counts", autofit=False)
        arrival = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=6)
        os.utime(tmp, (arrival.timestamp(), arrival.timestamp()))
        os.replace(tmp, path)
        written += 1
    return written


def materialise(params: SimulationParams, as_of: date, *, erp_url: str, landing: Path, api_file: Path) -> dict:
    """Make every source look as it does at the end of ``as_of``; safe to call repeatedly."""
    world = RetailWorld(params)
    tables = world.erp_as_of(as_of)
    write_erp(tables, erp_url)
    files = write_inventory_files(world.inventory_counts, landing, as_of)
    cutoff = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    api_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = api_file.with_name(f".{api_file.name}.tmp")
    world.supplier_performance.filter(pl.col("updated_at") < cutoff).write_parquet(tmp)
    os.replace(tmp, api_file)
    return {"as_of": as_of.isoformat(), "files_written": files} | {k: v.height for k, v in tables.items()}
