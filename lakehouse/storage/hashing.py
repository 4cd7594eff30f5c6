"""Order-independent content hashes of tables and frames, for comparing lakes (tests, rebuilds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import polars as pl

from lakehouse.storage.paths import Location
from lakehouse.storage.table_io import scan, tables

# Columns whose value legitimately differs between two identical runs (wall clock, run id).
VOLATILE_COLUMNS = frozenset({"_ingested_at", "_run_id"})


def content_hash(lake: Location, layer: str, table: str, *, ignore: Iterable[str] = ()) -> str:
    """Order-independent hash of a table's rows, ignoring wall-clock lineage columns.

    Two runs that produce the same rows (in any order, in any file layout) hash equal.
    ``ignore`` drops more columns, e.g. the lineage of which batch delivered a row.
    """
    lf = scan(lake, layer, table, missing_ok=True)
    return "empty" if lf is None else frame_hash(lf, ignore=ignore)


def frame_hash(lf: pl.LazyFrame, *, ignore: Iterable[str] = ()) -> str:
    """``content_hash`` of any frame (e.g. a filtered table).

    For comparing lakes built by one installation (tests, rebuild checks): Polars' row hash is
    not specified across versions, so a digest is never stored or compared with another
    version's."""
    skip = VOLATILE_COLUMNS | set(ignore)
    cols = sorted(c for c in lf.collect_schema().names() if c not in skip)
    hashes = lf.select(pl.struct(cols).hash(seed=0).alias("h")).sort("h").collect()["h"]
    digest = hashlib.sha256(hashes.to_numpy().tobytes())
    digest.update(",".join(cols).encode())
    return digest.hexdigest()


def layer_hashes(lake: Location, *, ignore: Iterable[str] = ()) -> dict[str, str]:
    """``{"layer.table": hash}`` for every table in bronze, silver and gold."""
    return {f"{layer}.{t}": content_hash(lake, layer, t, ignore=ignore)
            for layer in ("bronze", "silver", "gold") for t in tables(lake, layer)}
