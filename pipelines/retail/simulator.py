"""Deterministic, seeded simulator of a retailer's source systems, advanced one day at a time.

The story: a supply-chain team with ~10,000 SKUs in 12 warehouses deciding on
48-hour-old Excel exports. The simulator lives through the days one by one (products and
their price/category changes, customers who move, daily demand with weekly and yearly
seasonality, trend, promotions announced in advance with price effects, holidays and
stockouts) and writes each day into the sources as they would receive it:

* an ERP database (any SQLAlchemy URL; SQLite by default), rows appended by change time,
* supplier performance served by the REST API in ``api_server.py``,
* daily inventory count files per warehouse (CSV and .xlsx) in a landing folder.

**The past never changes.** What a day holds is drawn from random streams keyed by the seed
and that day (``numpy.random.default_rng([seed, stream, day])``) and from the state the day
before left (stock on hand, deliveries on their way, the next order numbers). Nothing depends
on how far the world is simulated (``SimulationParams.end``), so simulating further leaves every
earlier day's source data byte-identical. ``materialise`` advances the sources by one day at the
cost of one day, from the state it saved the day before (``<sources>/simulator/``), in memory
bounded by a day plus the rows of one ERP flush.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
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
PROMO_DAYS = 3  # a promotion runs three days
BLOCK_DAYS = 31  # days keyed into the ERP together (the draws stay per day)
BLOCK_UNITS = 1_000_000  # ... or fewer, so that a block holds about 500,000 order lines at seed scale
RING = 16  # deliveries are due at most 15 days ahead (lead time <= 8, a missed delivery +7)
# the random streams of one day; a stream is never reused for another purpose
DEMAND, ORDERS, SUPPLIER_PERF, COUNTS, PROMOS = 5, 6, 7, 8, 9
WEEKLY = np.array([[1.0, 0.95, 0.95, 1.0, 1.15, 1.35, 0.65]]) * np.ones((len(CATEGORIES), 1))
WEEKLY[CATEGORIES.index("bakery")] = [1.0, 1.0, 1.0, 1.0, 1.1, 1.5, 1.3]
SEASON_AMPLITUDE = np.linspace(0.15, 0.45, len(CATEGORIES))
SEASON_PHASE = np.linspace(0, 300, len(CATEGORIES))


@dataclass(frozen=True)
class SimulationParams:
    """Scale and window of the simulated retailer. ``seed scale`` is 10,247 x 12.

    ``end`` is only the day a caller simulates through by default: no day's data depends on it.
    """

    n_skus: int = 120
    n_warehouses: int = 4
    n_customers: int = 400
    history_start: date = date(2024, 9, 1)
    end: date = date(2026, 11, 3)
    inventory_from: date = date(2026, 9, 20)  # the first day warehouses send count files
    # the ERP incident: the last supplier is hard-deleted (delisted) for this one day, and the
    # last SKU is keyed in only on this day although it sold before (facts meet it inferred)
    incident: date | None = date(2026, 11, 1)
    seed: int = 7
    dirty_rate: float = 0.002  # share of order lines / count rows that break a contract
    promo_lead_days: int = 14  # promotions enter the ERP's calendar this many days ahead
    # product and customer changes are drawn over this many days from the history's start,
    # whatever `end` is (a horizon that moved with `end` would rewrite the dimensions' past on
    # every extension); a short test world sets it to its span to see as many changes
    change_horizon_days: int = 1096
    # a price regime change: from this day every list price is multiplied by the factor
    # and demand answers with an elasticity of -1.2 (drift-monitoring tests)
    price_shock: tuple[date, float] | None = None

    @property
    def days(self) -> list[date]:
        n = (self.end - self.history_start).days + 1
        return [self.history_start + timedelta(days=i) for i in range(n)]

    def fingerprint(self) -> str:
        """Everything that shapes the world's days: all parameters except ``end``."""
        fields = {k: v for k, v in asdict(self).items() if k != "end"}
        return hashlib.sha256(json.dumps(fields, default=str, sort_keys=True).encode()).hexdigest()[:16]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


@dataclass
class WorldState:
    """What one simulated day leaves to the next (saved between ``materialise`` calls)."""

    day: date  # the last day lived through (the day before the history for a new world)
    stock: np.ndarray  # (skus, warehouses) closing stock of ``day``
    due: np.ndarray  # (RING, skus, warehouses) deliveries arriving on day + 1 + k
    on_order: np.ndarray  # (skus, warehouses) a replenishment is on its way
    next_order: int = 1
    next_line: int = 1
    # order-line corrections already keyed for a later change time (they surface that day)
    later: pl.DataFrame = field(default_factory=pl.DataFrame)


@dataclass
class Day:
    """One simulated day: what sold, what is left, at which discount."""

    day: date
    units: np.ndarray  # (skus, warehouses) units sold
    closing: np.ndarray  # (skus, warehouses) stock at the end of the day
    discount: np.ndarray  # (skus,) promotion discount of the day


class RetailWorld:
    """The simulated retailer: stable dimensions, and ``live(state, day)`` for one more day."""

    def __init__(self, params: SimulationParams) -> None:
        self.p = params

    def rng(self, stream: int, day: date) -> np.random.Generator:
        """The random stream ``stream`` of ``day``: the same numbers whatever else was drawn."""
        return np.random.default_rng([self.p.seed, stream, day.toordinal()])

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
        rows = []
        created = _midnight(self.p.history_start - timedelta(days=30))
        for rec in self._product_base.iter_rows(named=True):
            version = {k: rec[k] for k in ("product_id", "name", "category", "supplier_id", "unit_price")}
            version |= {"is_discontinued": False, "updated_at": created}
            rows.append(dict(version))
            n_changes = int(rng.integers(0, 5))
            for offset in sorted(rng.integers(1, self.p.change_horizon_days, n_changes)):
                at = _midnight(self.p.history_start + timedelta(days=int(offset))) + timedelta(
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
        at = _midnight(day) + timedelta(hours=6)
        before = versions.filter(pl.col("updated_at") < at)
        repriced = (before.group_by("product_id").agg(pl.all().sort_by("updated_at").last())
                    .filter(~pl.col("is_discontinued")).with_columns(updated_at=pl.lit(at)))
        after = pl.concat([repriced.select(versions.columns), versions.filter(pl.col("updated_at") >= at)])
        after = after.with_columns((pl.col("unit_price") * factor).round(2))
        return pl.concat([before, after]).sort("product_id", "updated_at")

    @cached_property
    def customer_versions(self) -> pl.DataFrame:
        rng = np.random.default_rng(self.p.seed + 4)
        created = _midnight(self.p.history_start - timedelta(days=60))
        rows = []

        def some_day() -> datetime:
            return _midnight(self.p.history_start + timedelta(days=int(rng.integers(1, self.p.change_horizon_days))))

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
                moved = some_day()
                version["city"] = CITIES[int(rng.integers(0, len(CITIES)))]
                version["updated_at"] = moved + timedelta(hours=11)
                rows.append(dict(version))
            # some accounts are closed (flagged deleted); half of those are reopened later
            if i > 0 and rng.random() < 0.06:
                closed = max(version["updated_at"], some_day()) + timedelta(hours=15)
                rows.append(version | {"is_deleted": True, "updated_at": closed})
                if rng.random() < 0.5:
                    rows.append(version | {"updated_at": closed + timedelta(days=int(rng.integers(5, 40)))})
        return pl.DataFrame(rows).sort("customer_id", "updated_at")

    # ------------------------------------------------------------------ per-SKU constants
    @cached_property
    def _sku(self) -> dict[str, np.ndarray]:
        """Per-SKU and per-warehouse constants of the demand and replenishment model."""
        base = self._product_base
        rng = np.random.default_rng(self.p.seed + 5)
        cat = np.array([CATEGORIES.index(c) for c in base["category"]])
        wh_factor = rng.uniform(0.6, 1.4, self.p.n_warehouses)
        demand = base["base_demand"].to_numpy()
        # reorder levels from the average day (weekly mean, no season): a quantity of the SKU,
        # not of the simulated window, so it never changes as the world goes on
        avg = demand[:, None] * WEEKLY[cat].mean(axis=1)[:, None] * wh_factor[None, :] + 0.05
        sku_index = {s: i for i, s in enumerate(base["product_id"])}
        stops = np.full(self.p.n_skus, date.max.toordinal())
        for sku, at in self.product_versions.filter(pl.col("is_discontinued")).select(
                "product_id", "updated_at").iter_rows():
            stops[sku_index[sku]] = at.date().toordinal()
        lead = self.suppliers["lead_time_days"].to_numpy()[np.array([int(s[3:]) - 1 for s in base["supplier_id"]])]
        return {"cat": cat, "wh_factor": wh_factor, "demand": demand, "avg": avg, "stops": stops, "lead": lead}

    @cached_property
    def _holidays(self) -> holidays_lib.HolidayBase:
        return holidays_lib.country_holidays("FR")  # years are added as days ask for them

    @cached_property
    def _customer_status(self) -> pl.DataFrame:
        return self.customer_versions.select("customer_id", "updated_at", "is_deleted").sort("updated_at")

    @cached_property
    def _prices(self) -> pl.DataFrame:
        return self.product_versions.select("product_id", "updated_at", "unit_price").sort("updated_at")

    # ------------------------------------------------------------------ promotions
    def promo_starts(self, day: date) -> np.ndarray:
        """The discount of each promotion that starts on ``day`` (0 where none starts)."""
        rng = self.rng(PROMOS, day)
        starts = rng.random(self.p.n_skus) < 0.04
        return np.where(starts, rng.choice([0.1, 0.2, 0.3], self.p.n_skus), 0.0)

    def discount(self, day: date) -> np.ndarray:
        """The day's discount per SKU: the deepest of the promotions running that day."""
        return np.max([self.promo_starts(day - timedelta(days=k)) for k in range(PROMO_DAYS)], axis=0)

    def promotions_announced(self, first: date, last: date) -> pl.DataFrame:
        """The promotions calendar's rows keyed in from ``first`` to ``last``: those starting
        ``promo_lead_days`` later (on the history's first day, also every promotion already
        announced by then)."""
        lead = self.p.promo_lead_days
        since = 1 - PROMO_DAYS if first == self.p.history_start else lead
        starts = [first + timedelta(days=k) for k in range(since, (last - first).days + lead + 1)]
        discounts = np.stack([self.promo_starts(day) for day in starts])  # (days, skus)
        d_i, s_i = np.nonzero(discounts)
        start = pl.Series([starts[i] for i in d_i], dtype=pl.Date)
        return pl.DataFrame({
            "promotion_id": start.dt.strftime("PR%Y%m%d-") + pl.Series(s_i + 1).cast(pl.String).str.zfill(6),
            "product_id": self._product_base["product_id"].gather(s_i),
            "starts_on": start,
            "ends_on": start + timedelta(days=PROMO_DAYS - 1),
            "discount_pct": discounts[d_i, s_i],
            "updated_at": start.cast(pl.Datetime("us")) - timedelta(days=lead) + timedelta(hours=9),
        }, schema=ERP_SCHEMAS["promotions"])

    # ------------------------------------------------------------------ one day
    def initial_state(self) -> WorldState:
        sku = self._sku
        return WorldState(
            day=self.p.history_start - timedelta(days=1),
            stock=np.ceil(sku["avg"] * 14).astype(np.int64),
            due=np.zeros((RING, self.p.n_skus, self.p.n_warehouses), dtype=np.int64),
            on_order=np.zeros((self.p.n_skus, self.p.n_warehouses), dtype=bool),
            later=pl.DataFrame(schema=ERP_SCHEMAS["order_lines"]),
        )

    def demand_rate(self, day: date, discount: np.ndarray) -> np.ndarray:
        """Expected units per (SKU, warehouse) on ``day``."""
        sku, p = self._sku, self.p
        cat = sku["cat"]
        doy, t = day.timetuple().tm_yday, (day - p.history_start).days / 365.0
        season = 1 + SEASON_AMPLITUDE[cat] * np.sin(2 * math.pi * (doy - SEASON_PHASE[cat]) / 365)
        week = WEEKLY[cat, day.weekday()]
        holiday = 0.6 if day in self._holidays else 1.0
        pre_holiday = 1.3 if day + timedelta(days=1) in self._holidays else 1.0  # the rush before
        uplift = (1 - discount) ** -2.5
        lam = (sku["demand"] * season * week * (1 + 0.12 * t) * holiday * pre_holiday * uplift)[:, None] \
            * sku["wh_factor"][None, :]
        if p.price_shock is not None and day >= p.price_shock[0]:
            lam = lam * p.price_shock[1] ** -1.2
        lam[sku["stops"] <= day.toordinal()] = 0  # a discontinued product stops selling that day
        return lam

    def live(self, state: WorldState, day: date) -> Day:
        """Live through ``day`` (the day after ``state.day``): sell and replenish. Updates
        ``state`` in place and returns what sold; ``erp_rows`` keys a run of days in."""
        assert day == state.day + timedelta(days=1), f"{day} does not follow {state.day}"
        sku = self._sku
        discount = self.discount(day)
        rng = self.rng(DEMAND, day)
        demand = rng.poisson(self.demand_rate(day, discount))
        failures = rng.random(self.p.n_skus) < 0.01  # the supplier misses a delivery by a week
        arriving, state.due = state.due[0], np.roll(state.due, -1, axis=0)
        state.due[-1] = 0
        stock = state.stock + arriving
        state.on_order &= ~(arriving > 0)
        units = np.minimum(demand, stock)
        stock = stock - units
        need = (stock < sku["avg"] * 7) & ~state.on_order
        qty = np.ceil(sku["avg"] * 21).astype(np.int64)
        ahead = sku["lead"] + np.where(failures, 7, 0)  # days until the delivery arrives
        s_i, w_i = np.nonzero(need)
        np.add.at(state.due, (ahead[s_i] - 1, s_i, w_i), qty[s_i, w_i])
        state.on_order |= need
        state.stock, state.day = stock, day
        return Day(day, units, stock.copy(), discount)

    def _order_lines(self, state: WorldState, lived: list[Day]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The orders and order lines of a run of days (every line version, corrections
        included). Numbers continue from ``state``; each day's draws come from its own stream."""
        cells = []
        for d in lived:
            w_i, s_i = np.nonzero(d.units.T)  # by warehouse, then product: the order lines are keyed
            sold = d.units[s_i, w_i]
            n_lines = np.ceil(sold / 2).astype(np.int64)
            cell = np.repeat(np.arange(sold.size), n_lines)
            first = np.r_[0, np.cumsum(n_lines)[:-1]]
            pos = np.arange(cell.size) - first[cell]
            cells.append((d, s_i[cell], w_i[cell], np.where(pos == n_lines[cell] - 1,
                                                              sold[cell] - 2 * (n_lines[cell] - 1), 2)))
        day_of = np.concatenate([np.full(len(q), d.day.toordinal()) for d, _, _, q in cells])
        s_all = np.concatenate([s for _, s, _, _ in cells])
        lines = pl.DataFrame({
            "_day": pl.Series(day_of, dtype=pl.Int64),
            "product_id": self._product_base["product_id"].gather(s_all),
            "warehouse_id": self.warehouses["warehouse_id"].gather(np.concatenate([w for _, _, w, _ in cells])),
            "discount_pct": np.concatenate([d.discount[s] for d, s, _, _ in cells]),
            "quantity": pl.Series(np.concatenate([q for *_, q in cells]), dtype=pl.Int64),
        })
        # lines of one day and warehouse are grouped into orders of ~3 lines
        lines = lines.with_columns(
            _grp=pl.int_range(pl.len()).over("_day", "warehouse_id") // 3,
            order_line_id=pl.format("OL{}", pl.int_range(state.next_line, state.next_line + pl.len())
                                    .cast(pl.String).str.zfill(9)))
        orders = lines.select("_day", "warehouse_id", "_grp").unique(maintain_order=True)
        per_day = dict(orders.group_by("_day").len().iter_rows())
        draws = [self._order_draws(d.day, per_day.get(d.day.toordinal(), 0), len(q)) for d, *_, q in cells]
        orders = orders.with_columns(
            order_id=pl.format("O{}", pl.int_range(state.next_order, state.next_order + pl.len())
                               .cast(pl.String).str.zfill(8)),
            customer_id=pl.Series([f"CUS{i + 1:06d}" for c, _, _, _ in draws for i in c], dtype=pl.String),
            ordered_at=(pl.col("_day") - date(1970, 1, 1).toordinal()).cast(pl.Date).cast(pl.Datetime("us"))
            + pl.duration(seconds=pl.Series(np.concatenate([t for _, t, _, _ in draws]), dtype=pl.Int64)),
        )
        state.next_line += lines.height
        state.next_order += orders.height
        # a closed account places no orders: those go to the first customer, never closed
        orders = orders.sort("ordered_at").join_asof(
            self._customer_status, left_on="ordered_at", right_on="updated_at", by="customer_id",
            strategy="backward", check_sortedness=False,
        ).with_columns(customer_id=pl.when(pl.col("is_deleted")).then(pl.lit("CUS000001"))
                       .otherwise(pl.col("customer_id"))).drop("updated_at", "is_deleted").sort("order_id")
        lines = lines.join(orders.select("_day", "warehouse_id", "_grp", "order_id", "ordered_at"),
                           on=["_day", "warehouse_id", "_grp"]).drop("_grp")
        lines = lines.sort("ordered_at").join_asof(
            self._prices, left_on="ordered_at", right_on="updated_at", by="product_id", strategy="backward",
            check_sortedness=False,
        ).with_columns(
            unit_price=(pl.col("unit_price") * (1 - pl.col("discount_pct"))).round(2),
            updated_at=pl.col("ordered_at") + pl.duration(minutes=5),
        ).drop("updated_at_right", strict=False).sort("order_line_id")
        dirty = pl.Series(np.concatenate([x for *_, x, _ in draws]))
        lines = lines.with_columns(
            quantity=pl.when(dirty).then(-pl.col("quantity")).otherwise(pl.col("quantity")))
        # 1% of lines are corrected 1-3 days later (quantity re-keyed): late-arriving changes
        corrected = pl.Series(np.concatenate([x for *_, x in draws]))
        corrections = lines.filter(corrected & ~dirty).with_columns(
            quantity=pl.col("quantity") + 1,
            updated_at=pl.col("updated_at") + pl.duration(days=pl.lit(1) + pl.col("quantity") % 3),
        )
        cols = list(ERP_SCHEMAS["order_lines"])
        orders = orders.select("order_id", "customer_id", "warehouse_id", "ordered_at",
                               pl.lit("confirmed").alias("status"), pl.col("ordered_at").alias("updated_at"))
        return orders, pl.concat([lines.select(cols), corrections.select(cols)])

    def _order_draws(self, day: date, n_orders: int, n_lines: int) -> tuple[np.ndarray, ...]:
        """The day's random draws for its orders and lines: customer, time, dirty, corrected."""
        rng = self.rng(ORDERS, day)
        return (rng.integers(0, self.p.n_customers, n_orders), rng.integers(7 * 3600, 21 * 3600, n_orders),
                rng.random(n_lines) < self.p.dirty_rate, rng.random(n_lines) < 0.01)

    def erp_rows(self, state: WorldState, lived: list[Day]) -> dict[str, pl.DataFrame]:
        """The ERP rows whose change time falls on the days ``lived`` (consecutive, the last of them
        ``state.day``); on the history's first day, also every row changed before it (the ERP's
        state when the simulation starts). Corrections keyed for later days wait in ``state``."""
        first, last = lived[0].day, lived[-1].day
        start = datetime.min if first == self.p.history_start else _midnight(first)
        cutoff = _midnight(last + timedelta(days=1))
        orders, lines = self._order_lines(state, lived)
        lines = pl.concat([state.later, lines])
        state.later = lines.filter(pl.col("updated_at") >= cutoff)
        in_window = (pl.col("updated_at") >= start) & (pl.col("updated_at") < cutoff)
        products = self.product_versions.filter(in_window)
        incident = self.p.incident
        if incident is not None:
            late_sku = self._product_base["product_id"][-1]
            hidden = (pl.col("product_id") == late_sku) & (pl.col("updated_at") < _midnight(incident + timedelta(days=1)))
            products = products.filter(~hidden)
            if first <= incident <= last:  # keyed in that day: its version as it stands then
                keyed_in = _midnight(incident) + timedelta(hours=10)
                late = (self.product_versions.filter(hidden).tail(1)
                        .with_columns(updated_at=pl.max_horizontal("updated_at", pl.lit(keyed_in))))
                products = pl.concat([products, late])
        return {
            "products": products.sort("product_id", "updated_at"),
            "customers": self.customer_versions.filter(in_window),
            "orders": orders,
            "order_lines": lines.filter(pl.col("updated_at") < cutoff).sort("order_line_id", "updated_at"),
            "promotions": self.promotions_announced(first, last),
        }

    # ------------------------------------------------------------------ other sources
    def supplier_performance(self, day: date) -> pl.DataFrame:
        """Each supplier's delivery performance on ``day``, published 26 hours later."""
        sup = self.suppliers
        rng = self.rng(SUPPLIER_PERF, day)
        n = sup.height
        return pl.DataFrame({
            "supplier_id": sup["supplier_id"],
            "performance_date": [day] * n,
            "lead_time_days": sup["lead_time_days"] + rng.integers(-1, 3, n),
            "fill_rate": np.round(np.clip(rng.normal(0.95, 0.04, n), 0.5, 1.0), 3),
            "updated_at": [_midnight(day) + timedelta(hours=26)] * n,
        })

    def inventory_counts(self, day: date, closing: np.ndarray) -> pl.DataFrame:
        """The end-of-day stock counts of ``day`` (some rows broken, as people key them)."""
        n_s, n_w = closing.shape
        s_i, w_i = np.meshgrid(np.arange(n_s), np.arange(n_w), indexing="ij")
        dirty = self.rng(COUNTS, day).random(n_s * n_w) < self.p.dirty_rate
        return pl.DataFrame({
            "count_date": [day] * (n_s * n_w),
            "warehouse_id": self.warehouses["warehouse_id"].gather(w_i.ravel()),
            "sku": self._product_base["product_id"].gather(s_i.ravel()),
            "on_hand": np.where(dirty, -1, closing.ravel()).astype(np.int64),
        })


ERP_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "warehouses": {"warehouse_id": pl.String, "name": pl.String, "city": pl.String, "region": pl.String,
                   "updated_at": pl.Datetime("us")},
    "suppliers": {"supplier_id": pl.String, "name": pl.String, "country": pl.String,
                  "updated_at": pl.Datetime("us")},
    "products": {"product_id": pl.String, "name": pl.String, "category": pl.String, "supplier_id": pl.String,
                 "unit_price": pl.Float64, "is_discontinued": pl.Boolean, "updated_at": pl.Datetime("us")},
    "customers": {"customer_id": pl.String, "name": pl.String, "segment": pl.String, "city": pl.String,
                  "email": pl.String, "is_deleted": pl.Boolean, "updated_at": pl.Datetime("us")},
    "orders": {"order_id": pl.String, "customer_id": pl.String, "warehouse_id": pl.String,
               "ordered_at": pl.Datetime("us"), "status": pl.String, "updated_at": pl.Datetime("us")},
    "order_lines": {"order_line_id": pl.String, "order_id": pl.String, "product_id": pl.String,
                    "warehouse_id": pl.String, "quantity": pl.Int64, "unit_price": pl.Float64,
                    "discount_pct": pl.Float64, "updated_at": pl.Datetime("us")},
    # the business plans promotions ahead: the calendar a forecast can read for the days it predicts
    "promotions": {"promotion_id": pl.String, "product_id": pl.String, "starts_on": pl.Date, "ends_on": pl.Date,
                   "discount_pct": pl.Float64, "updated_at": pl.Datetime("us")},
}


# ---------------------------------------------------------------------- materialisation
class Erp:
    """The simulated ERP database at a SQLAlchemy URL: tables appended to day by day.

    A ``_simulation`` table records the world (its fingerprint) and the last day the tables
    hold; it says NULL while days are being appended, so a killed writer is never resumed
    from (the next call starts the world again).
    """

    FLUSH_ROWS = 200_000

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(url)
        if self.engine.url.get_backend_name() == "sqlite" and self.engine.url.database:
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        types = {pl.String: sa.String, pl.Int64: sa.BigInteger, pl.Float64: sa.Float,
                 pl.Boolean: sa.Boolean, pl.Datetime("us"): sa.DateTime, pl.Date: sa.Date}
        self.meta = sa.MetaData()
        self.tables = {}
        for name, schema in ERP_SCHEMAS.items():
            table = sa.Table(name, self.meta, *[sa.Column(c, types[t]) for c, t in schema.items()])
            # as an ERP does: extracts select a window of change times, which an index makes
            # cost the window rather than the table's whole history
            sa.Index(f"ix_{name}_updated_at", table.c.updated_at)
            self.tables[name] = table
        self.marker = sa.Table("_simulation", self.meta, sa.Column("world", sa.String),
                               sa.Column("through", sa.Date))
        self.buffer: dict[str, list[pl.DataFrame]] = {}
        self.buffered = 0
        self.appended: dict[str, int] = dict.fromkeys(ERP_SCHEMAS, 0)

    def through(self, world: str) -> date | None:
        """The last day this world's rows are complete through, or None."""
        sa = self.sa
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("_simulation"):
                return None
            row = conn.execute(sa.select(self.marker.c.world, self.marker.c.through)).first()
        return row.through if row is not None and row.world == world else None

    def reset(self, world: str, warehouses: pl.DataFrame, suppliers: pl.DataFrame) -> None:
        """Empty tables, with the dimensions an ERP has before its first day of orders."""
        with self.engine.begin() as conn:
            self.meta.drop_all(conn)
            self.meta.create_all(conn)
            conn.execute(self.marker.insert(), [{"world": world, "through": None}])
            self._insert(conn, "warehouses", warehouses)
            self._insert(conn, "suppliers", suppliers)

    def begin(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.marker.update().values(through=None))

    def append(self, rows: dict[str, pl.DataFrame]) -> None:
        for name, df in rows.items():
            if df.height:
                self.buffer.setdefault(name, []).append(df)
                self.buffered += df.height
        if self.buffered >= self.FLUSH_ROWS:
            self.flush()

    def flush(self, through: date | None = None) -> None:
        """Write the buffered rows; with ``through``, in the same transaction mark the tables
        complete through that day."""
        with self.engine.begin() as conn:
            for name, frames in self.buffer.items():
                self._insert(conn, name, pl.concat(frames))
            if through is not None:
                conn.execute(self.marker.update().values(through=through))
        self.buffer, self.buffered = {}, 0

    def set_supplier(self, supplier: pl.DataFrame, present: bool) -> None:
        """Delete or put back one supplier: the supplier table is a plain table, no history."""
        self.flush()
        table = self.tables["suppliers"]
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.supplier_id == supplier["supplier_id"][0]))
            if present:
                self._insert(conn, "suppliers", supplier)

    def _insert(self, conn, name: str, df: pl.DataFrame) -> None:
        df = df.select(list(ERP_SCHEMAS[name]))
        if self.engine.url.get_backend_name() == "sqlite":
            # plain tuples through the driver, in the text SQLAlchemy's SQLite types store and
            # compare (a window's bounds are compared as text): 5x faster than row dicts
            text = df.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S.%6f"),
                                   pl.col(pl.Date).dt.strftime("%Y-%m-%d"), pl.col(pl.Boolean).cast(pl.Int64))
            sql = f'INSERT INTO "{name}" ({", ".join(df.columns)}) VALUES ({", ".join("?" * df.width)})'
            for chunk in text.iter_slices(50_000):
                conn.exec_driver_sql(sql, list(chunk.iter_rows()))
        else:
            for chunk in df.iter_slices(50_000):
                conn.execute(self.tables[name].insert(), chunk.to_dicts())
        self.appended[name] = self.appended.get(name, 0) + df.height

    def dispose(self) -> None:
        self.engine.dispose()


def write_inventory_file(counts: pl.DataFrame, landing: Path) -> int:
    """Drop one day's count files, one per warehouse; even warehouses send CSV, odd ones .xlsx.

    Each file is counted at the end of its day and lands the next morning (06:00 UTC): its
    modification time is that arrival moment. Existing files are left alone.
    """
    landing.mkdir(parents=True, exist_ok=True)
    written = 0
    for (wh, day), part in counts.group_by("warehouse_id", "count_date", maintain_order=True):
        ext = "csv" if int(wh[2:]) % 2 == 0 else "xlsx"
        path = landing / f"inventory_{wh}_{day:%Y%m%d}.{ext}"
        if path.exists():
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        out = part.select("count_date", "warehouse_id", "sku", "on_hand")
        arrival = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=6)
        if ext == "csv":
            out.write_csv(tmp)
        else:
            import xlsxwriter

            # the workbook's "created" property is the arrival, not the wall clock: the same
            # day gives the same bytes, whenever it is simulated
            with xlsxwriter.Workbook(tmp) as book:
                book.set_properties({"created": arrival.replace(tzinfo=None)})
                out.write_excel(book, worksheet="counts", autofit=False)
        os.utime(tmp, (arrival.timestamp(), arrival.timestamp()))
        os.replace(tmp, path)
        written += 1
    return written


def save_state(state: WorldState, folder: Path, world: str) -> None:
    """Keep what the last day left (atomically: a reader sees the old state or the new one)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".state.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, stock=state.stock, due=state.due, on_order=state.on_order,
                 counters=np.array([state.next_order, state.next_line]))
    state.later.write_parquet(folder / ".later.parquet.tmp")
    os.replace(folder / ".later.parquet.tmp", folder / f"later_{state.day:%Y%m%d}.parquet")
    os.replace(tmp, folder / "state.npz")
    (folder / ".state.json.tmp").write_text(json.dumps({"world": world, "day": state.day.isoformat()}))
    os.replace(folder / ".state.json.tmp", folder / "state.json")
    for old in folder.glob("later_*.parquet"):
        if old.name != f"later_{state.day:%Y%m%d}.parquet":
            old.unlink()


def load_state(folder: Path, world: str, day: date) -> WorldState | None:
    """The state saved after ``day`` for this world, or None."""
    try:
        meta = json.loads((folder / "state.json").read_text())
        if meta != {"world": world, "day": day.isoformat()}:
            return None
        arrays = np.load(folder / "state.npz")
        later = pl.read_parquet(folder / f"later_{day:%Y%m%d}.parquet")
    except (OSError, ValueError):
        return None
    next_order, next_line = (int(v) for v in arrays["counters"])
    return WorldState(day=day, stock=arrays["stock"], due=arrays["due"], on_order=arrays["on_order"],
                      next_order=next_order, next_line=next_line, later=later)


def write_supplier_api(world: RetailWorld, as_of: date, api_file: Path) -> int:
    """The API's data as published by the end of ``as_of`` (each day's figures 26 hours later)."""
    days = [world.p.history_start + timedelta(days=i) for i in range((as_of - world.p.history_start).days)]
    frames = [world.supplier_performance(day) for day in days]
    rows = pl.concat(frames) if frames else world.supplier_performance(as_of).clear()
    api_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = api_file.with_name(f".{api_file.name}.tmp")
    rows.write_parquet(tmp)
    os.replace(tmp, api_file)
    return rows.height


def materialise(params: SimulationParams, as_of: date, *, erp_url: str, landing: Path, api_file: Path,
                state_dir: Path | None = None) -> dict:
    """Make every source look as it does at the end of ``as_of``; safe to call repeatedly.

    Days after the last one materialised are lived through from the saved state (one day costs
    one day); going back in time, another world, or a state that does not match the ERP start
    the world again from its first day (the same rows: the days are deterministic).
    """
    state_dir = state_dir or api_file.parent.parent / "simulator"
    world_id = params.fingerprint()
    world = RetailWorld(params)
    incident_days = set() if params.incident is None else {params.incident, params.incident + timedelta(days=1)}
    erp = Erp(erp_url)
    try:
        through = erp.through(world_id)
        state = load_state(state_dir, world_id, through) if through is not None and through <= as_of else None
        restarted = state is None
        if restarted:
            state = world.initial_state()
            erp.reset(world_id, world.warehouses, world.suppliers.drop("lead_time_days"))
        else:
            erp.begin()
        files = 0
        if state.day >= params.inventory_from and state.day < as_of:  # yesterday's counts land today
            files += write_inventory_file(world.inventory_counts(state.day, state.stock), landing)
        delisted = world.suppliers.drop("lead_time_days").tail(1)
        days, block = 0, []
        while state.day < as_of:
            lived = world.live(state, state.day + timedelta(days=1))
            days += 1
            block.append(lived)
            if params.inventory_from <= lived.day < as_of:
                files += write_inventory_file(world.inventory_counts(lived.day, lived.closing), landing)
            if (lived.day in incident_days or len(block) == BLOCK_DAYS or state.day == as_of
                    or sum(int(d.units.sum()) for d in block) > BLOCK_UNITS):
                erp.append(world.erp_rows(state, block))  # a month's rows at once: per-day frames cost 2x
                block = []
            if lived.day == params.incident:
                erp.set_supplier(delisted, present=False)
            elif lived.day in incident_days:
                erp.set_supplier(delisted, present=True)
        erp.flush(through=as_of)
        save_state(state, state_dir, world_id)
        api_rows = write_supplier_api(world, as_of, api_file)
    finally:
        erp.dispose()
    return {"as_of": as_of.isoformat(), "days_simulated": days, "restarted": restarted,
            "files_written": files, "api_rows": api_rows} | {f"{k}_appended": v for k, v in erp.appended.items()}
