"""Time travel: the analysts' catalog as the lake was at an earlier moment or table version.

Delta tables keep every version's file list in their log, and the files themselves until
``vacuum`` deletes them after the retention period (ADR 0019), so a catalog of views over an
earlier version's files answers as the lake did then. ``lakehouse sql --as-of`` builds such
a catalog in a temporary file and queries it under the same read-only sandbox;
``lakehouse catalog --as-of ... --out F`` writes one for the ``duckdb`` CLI. Tables still on
the file protocol have no versions: they are served as they are now, and the result says so.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lakehouse import storage
from lakehouse.config import DomainConfig

_PIN = re.compile(r"^(?P<table>(?:bronze|silver|gold)\.[A-Za-z0-9_]+)@(?P<version>\d+)$")


class AsOfError(ValueError):
    """An ``--as-of`` value that names no moment, no Delta table or no kept version."""


@dataclass(frozen=True)
class AsOf:
    """A moment (every Delta table as of it) and/or explicit versions of named tables."""

    when: datetime | None = None
    versions: Mapping[str, int] = field(default_factory=dict)  # "layer.table" -> version


def parse(values: list[str]) -> AsOf:
    """``["2026-11-03T12:00:00Z", "gold.fct_order_lines@3"]`` -> ``AsOf``.

    A timestamp is ISO 8601 (UTC unless it has an offset; a bare date is its midnight, UTC);
    ``layer.table@N`` pins one table to its version N and wins over the timestamp for it.
    """
    when, versions = None, {}
    for value in values:
        if pin := _PIN.match(value):
            versions[pin["table"]] = int(pin["version"])
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise AsOfError(f"--as-of {value!r}: expected an ISO timestamp (2026-11-03T12:00:00Z, "
                            f"2026-11-03) or layer.table@VERSION (gold.fct_order_lines@3)") from None
        if when is not None:
            raise AsOfError(f"--as-of {value!r}: one timestamp at a time (already {when.isoformat()})")
        when = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return AsOf(when, versions)


def resolve(cfg: DomainConfig, as_of: AsOf) -> dict[str, int | None]:
    """The version of each Delta table to serve (``None``: the table did not exist then)."""
    from lakehouse import delta

    tables = dict(storage.delta_tables(cfg.lake))
    unknown = sorted(set(as_of.versions) - set(tables))
    if unknown:
        raise AsOfError(f"--as-of: {', '.join(unknown)} is not a Delta table of this lake; "
                        f"versioned tables: {', '.join(sorted(tables)) or 'none'}")
    out: dict[str, int | None] = {}
    for name, root in tables.items():
        if name in as_of.versions:
            newest = delta.version(root)
            if as_of.versions[name] > newest:
                raise AsOfError(f"--as-of {name}@{as_of.versions[name]}: the newest version is {newest}")
            out[name] = as_of.versions[name]
        elif as_of.when is not None:
            out[name] = delta.version_at(root, as_of.when)
    return out


def unversioned(cfg: DomainConfig) -> list[str]:
    """Tables served as they are now whatever ``--as-of`` says (not Delta tables yet)."""
    versioned = {name for name, _ in storage.delta_tables(cfg.lake)}
    return sorted(f"{layer}.{t}" for layer in ("bronze", "silver", "gold")
                  for t in storage.tables(cfg.lake, layer) if f"{layer}.{t}" not in versioned)


def build(cfg: DomainConfig, as_of: AsOf, target: Path) -> Path:
    """Write a catalog of the lake as of ``as_of`` to ``target`` (the served catalog is untouched)."""
    from lakehouse.catalog import build_catalog

    return build_catalog(cfg, target, versions=resolve(cfg, as_of))


@contextlib.contextmanager
def connect(cfg: DomainConfig, as_of: AsOf) -> Iterator:
    """A read-only, sandboxed DuckDB connection to a temporary catalog as of ``as_of``."""
    from lakehouse.catalog import connect_read_only

    with tempfile.TemporaryDirectory(prefix="lakehouse-as-of-") as tmp:
        path = build(cfg, as_of, Path(tmp) / "as_of.duckdb")
        con = connect_read_only(cfg, path)
        try:
            yield con
        finally:
            con.close()


def history(cfg: DomainConfig, name: str, limit: int | None = None) -> list[dict]:
    """The commits of one Delta table, newest first: version, UTC time, operation, rows."""
    from lakehouse import delta

    tables = dict(storage.delta_tables(cfg.lake))
    if name not in tables:
        raise AsOfError(f"{name} is not a Delta table of this lake; versioned tables: "
                        f"{', '.join(sorted(tables)) or 'none'}")
    out = []
    for commit in delta.history(tables[name], limit):
        metrics = commit.get("operationMetrics") or {}
        out.append({
            "version": commit["version"],
            "committed_at": datetime.fromtimestamp(commit["timestamp"] / 1000, UTC).isoformat(),
            "operation": commit.get("operation"),
            "rows_added": metrics.get("num_added_rows", metrics.get("num_target_rows_inserted")),
            # writes and merges name their metrics differently
            "files_added": metrics.get("num_added_files", metrics.get("num_target_files_added")),
            "files_removed": metrics.get("num_removed_files", metrics.get("num_target_files_removed")),
        })
    return out
