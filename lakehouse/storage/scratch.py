"""Private local scratch folders for intermediate files (spills, staging), removed after use.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from lakehouse.storage.paths import Location, is_remote, state_dir


def _scratch(lake: Location) -> Path:
    """A private local folder for intermediate files (same file system as the lake on disk)."""
    return (Path(tempfile.gettempdir()) / "lakehouse-staging" if is_remote(lake)
            else Path(state_dir(lake)) / "_staging") / uuid.uuid4().hex


@contextlib.contextmanager
def scratch_dir(lake: Location) -> Iterator[Path]:
    """A private local folder for intermediate files, removed on exit."""
    path = _scratch(lake)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def spill_buckets(frame: pl.LazyFrame, lake: Location, key: list[str], buckets: int) -> Iterator[list[pl.LazyFrame]]:
    """Split ``frame`` by a hash of ``key`` into ``buckets`` local files in one streamed pass.

    Yields one LazyFrame per non-empty bucket: every row of a key is in the same bucket, so a
    computation that is local to a key (latest version, SCD2 history) can run bucket by
    bucket in ``1/buckets`` of the memory. The files are removed on exit.
    """
    scratch = _scratch(lake)
    try:
        # Polars' hash only places rows in this call's scratch files, removed on exit: no value
        # outlives the process, so a hash that changes between Polars versions is harmless here
        frame.with_columns(_bucket=pl.struct(key).hash(seed=0) % buckets).sink_parquet(
            pl.PartitionBy(scratch, key="_bucket", include_key=False), mkdir=True, compression="lz4")
        dirs = sorted(scratch.glob("_bucket=*"), key=lambda d: int(d.name.split("=", 1)[1]))
        yield [pl.scan_parquet(sorted(d.glob("*.parquet"))) for d in dirs]  # all of a bucket's files
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
