"""Freshness windows: is each configured table's newest business date recent enough?

A table's freshness is the newest date-valued partition it holds (business or ingest
date), compared with a reference date: the run's business date after a daily run, or
yesterday in the domain timezone for a look from the terminal (``lakehouse status``).
Stale tables alert once per incident and recover when they catch up; they never block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lakehouse import storage
from lakehouse.config import DomainConfig

DATE_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def latest_date(lake: Path, layer: str, table: str) -> date | None:
    """The newest date-valued partition of a table (None when it has none)."""
    dates = [date.fromisoformat(v) for p in storage.partitions(lake, layer, table)
             for v in p.values() if DATE_VALUE.match(v)]
    return max(dates, default=None)


def default_as_of(cfg: DomainConfig) -> date:
    """Yesterday in the domain timezone: the newest business date a daily run can have finished;
    the domain's ``end_date`` if it is earlier (no run is scheduled after it)."""
    yesterday = datetime.now(ZoneInfo(cfg.timezone)).date() - timedelta(days=1)
    return min(yesterday, cfg.end_date) if cfg.end_date else yesterday


@dataclass(frozen=True)
class Freshness:
    table: str  # layer.table
    latest: date | None
    lag_days: int | None
    max_lag_days: int

    @property
    def fresh(self) -> bool:
        return self.lag_days is not None and self.lag_days <= self.max_lag_days


def check(cfg: DomainConfig, as_of: date) -> list[Freshness]:
    """Every configured freshness window, measured against ``as_of``."""
    out = []
    for rule in cfg.freshness:
        layer, table = rule.table.split(".", 1)
        latest = latest_date(cfg.lake, layer, table)
        lag = None if latest is None else (as_of - latest).days
        out.append(Freshness(rule.table, latest, lag, rule.max_lag_days))
    return out


def alert(cfg: DomainConfig, results: list[Freshness], as_of: date) -> dict[str, list[str]]:
    """Open an incident per stale table, resolve the ones that caught up; returns both lists."""
    from lakehouse import alerts

    stale, fresh = [], []
    for r in results:
        key = f"freshness:{cfg.name}:{r.table}"
        if r.fresh:
            fresh.append(r.table)
            if key in alerts.open_incidents():
                alerts.resolve(key, f":white_check_mark: *{r.table}* is fresh again "
                                    f"(newest date {r.latest}, as of {as_of}).")
            continue
        stale.append(r.table)
        seen = f"newest date {r.latest}, {r.lag_days} day(s) behind" if r.latest else "no dated partition"
        alerts.notify(f":hourglass: *{r.table}* missed its freshness window as of {as_of}: {seen} "
                      f"(allowed {r.max_lag_days}).", key=key)
    return {"stale": stale, "fresh": fresh}
