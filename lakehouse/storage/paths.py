"""Where things live in a lake: layer roots (one folder, or one bucket per layer), table and
partition folders, the state area; names are validated so configuration cannot escape the lake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

LAYERS = ("bronze", "silver", "gold", "_state")


DATA_FILE = "data.parquet"


_PART_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")


_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


Location = Path | str
"""A place in the lake: a ``Path`` on local disk, a ``scheme://bucket/key`` string elsewhere."""


class StorageError(RuntimeError):
    """A path, partition value or publish step was refused."""


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise StorageError(f"{kind} {value!r} is not a plain lower-case identifier")
    return value


def _check_part_value(key: str, value: str) -> str:
    if not _PART_VALUE.match(value) or value in {".", ".."}:
        raise StorageError(f"partition value {key}={value!r} has characters outside [A-Za-z0-9_.:+-]")
    return value


def is_remote(where: Location) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``, ``abfs://``, ...), False for a local path."""
    return not isinstance(where, Path) and "://" in where and not where.startswith("file://")


def join(base: Location, *parts: str) -> Location:
    """``base / part / ...`` for a local path or an object-store URI."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return Path(str(base).removeprefix("file://")).joinpath(*parts)


def _uri(where: Location, key: str) -> str:
    """fsspec returns keys without the scheme; put it back so Polars and DuckDB read the same object."""
    return f"{str(where).split('://', 1)[0]}://{key}"


def layer_root(lake: Location, layer: str) -> Location:
    """Where a layer lives: ``<lake>/<layer>``, or one bucket per layer.

    A lake root holding ``{layer}`` (``s3://acme-lake-{layer}/``, as the Terraform modules
    provision it: one bucket per layer with its own lifecycle and access rules) names each
    layer's bucket; state then lives in the gold bucket under ``_state/``.
    """
    if layer not in LAYERS:
        raise StorageError(f"unknown layer {layer!r}; expected one of {LAYERS}")
    if "{layer}" not in str(lake):
        return join(lake, layer)
    if layer == "_state":
        return join(str(lake).replace("{layer}", "gold"), "_state")
    root = str(lake).replace("{layer}", layer)
    return root.rstrip("/") if is_remote(root) else Path(root)


def lake_path(lake: Location, *parts: str) -> Location:
    """A path relative to the lake root (model artifacts); in the gold bucket for per-layer lakes."""
    return join(str(lake).replace("{layer}", "gold") if "{layer}" in str(lake) else lake, *parts)


def table_dir(lake: Location, layer: str, table: str) -> Location:
    """Directory of a table; names are validated so config can't escape the lake."""
    return join(layer_root(lake, layer), _check_name("table", table))


def partition_dir(lake: Location, layer: str, table: str,
                  partition: Mapping[str, str] | None = None) -> Location:
    parts = [f"{_check_name('partition key', k)}={_check_part_value(k, str(v))}"
             for k, v in (partition or {}).items()]
    return join(table_dir(lake, layer, table), *parts)


def state_dir(lake: Location) -> Location:
    """Where small state documents live (watermarks, registries, run history): ``<lake>/_state``."""
    return layer_root(lake, "_state")


def state_path(lake: Location, *parts: str) -> Location:
    """A state document or folder under ``state_dir``."""
    return join(state_dir(lake), *parts)
