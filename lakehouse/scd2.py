"""Slowly changing dimensions, type 2, as a pure LazyFrame transform."""

from __future__ import annotations

import polars as pl


def scd2(versions: pl.LazyFrame, *, key: list[str], changed_at: str, tracked: list[str],
         overwrite: list[str] | tuple[str, ...] = ()) -> pl.LazyFrame:
    """Turn change records into validity intervals.

    Validity comes from the source's change time (``changed_at``), never load time,
    so processing batches in any order gives the same history. A change record whose
    tracked columns equal the previous version's opens no new version.
    Columns in ``overwrite`` are type 1: a change to them opens no version and every
    version shows their latest value.
    Output adds ``valid_from``, ``valid_to`` (null while current), ``is_current``, ``version``.
    """
    ordered = versions.sort([*key, changed_at])
    if overwrite:
        ordered = ordered.with_columns(pl.col(c).last().over(key) for c in overwrite)
    # the tracked values compared themselves, not a hash of them: two versions whose hashes
    # collided would silently merge into one
    content = pl.struct(tracked)
    return (
        ordered.with_columns(_content=content)
        .filter(pl.col("_content").shift(1).over(key).ne_missing(pl.col("_content")))
        .with_columns(
            valid_from=pl.col(changed_at),
            valid_to=pl.col(changed_at).shift(-1).over(key),
        )
        .with_columns(
            is_current=pl.col("valid_to").is_null(),
            version=pl.int_range(1, pl.len() + 1).over(key).cast(pl.Int32),
        )
        .drop("_content")
    )


def latest(versions: pl.LazyFrame, *, key: list[str], order_by: list[str]) -> pl.LazyFrame:
    """The newest version of each key (ties broken by the later of ``order_by``)."""
    return versions.sort([*key, *order_by]).unique(key, keep="last", maintain_order=True)
