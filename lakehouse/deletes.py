"""Soft deletes as versions: pure LazyFrame transforms used by silver history.

A deleted record is not dropped: it becomes a version with ``is_deleted = true``
whose change time is when the delete happened, so SCD2 closes the previous version
there, and a record that comes back opens a new version. Two ways a source says
a record was deleted:

* ``flag_column``: the source sets a boolean (and bumps ``updated_at``);
* ``missing_from_snapshot``: every batch is a full extract, and a key present in
  one batch but absent from the next was deleted at that next batch's snapshot time.

Both are computed from the whole set of staged batches, never from the batch being
processed, so the result does not depend on the order in which batches arrived.
"""

from __future__ import annotations

import polars as pl

from lakehouse.bronze import day_bounds_utc

IS_DELETED = "is_deleted"


def from_flag(rows: pl.LazyFrame, flag_column: str) -> pl.LazyFrame:
    """Expose the source's delete flag as ``is_deleted`` (a tracked, type-2 attribute)."""
    return rows.with_columns(pl.col(flag_column).fill_null(False).alias(IS_DELETED))


def snapshot_time(batch: str, tz: str) -> pl.Expr:
    """When a daily snapshot was taken: the end of its business day in ``tz``, as naive UTC.

    Uses the extraction window's own definition (``day_bounds_utc``); applied to the
    distinct batch dates only, so the per-element call is cheap.
    """
    return pl.col(batch).cast(pl.Date).map_elements(lambda d: day_bounds_utc(d, tz)[1],
                                                    return_dtype=pl.Datetime("us"))


def from_snapshots(rows: pl.LazyFrame, *, key: list[str], changed_at: str, batch: str,
                   tz: str) -> pl.LazyFrame:
    """Infer deletes and reappearances from full-extract batches.

    ``rows`` holds every row of every snapshot batch, ``batch`` naming the batch
    (its business date). Returns the rows plus one tombstone per deletion
    (``is_deleted = true``, last known values, ``changed_at`` = snapshot time of the
    first batch missing the key). A row that reappears unchanged after a deletion
    gets ``changed_at`` = the snapshot time where it reappeared, so it opens a new
    version after the tombstone instead of collapsing into the old one.
    """
    batches = (rows.select(batch).unique().sort(batch)
               .with_columns(_i=pl.int_range(pl.len(), dtype=pl.Int64), _ts=snapshot_time(batch, tz)))
    seen = rows.select(*key, batch).unique().join(batches, on=batch)
    by_key = seen.sort([*key, "_i"]).with_columns(
        _prev_i=pl.col("_i").shift(1).over(key), _next_i=pl.col("_i").shift(-1).over(key))
    last_i = batches.select(pl.col("_i").max().alias("_last"))
    gone = (by_key.join(last_i, how="cross")
            .filter(pl.coalesce("_next_i", pl.col("_last") + 1) > pl.col("_i") + 1)
            .filter(pl.col("_i") < pl.col("_last"))
            .select(*key, batch, (pl.col("_i") + 1).alias("_gone_i")))
    tombstones = (
        rows.join(gone, on=[*key, batch])
        .join(batches.select(pl.col("_i").alias("_gone_i"), pl.col("_ts").alias("_deleted_at"),
                             pl.col(batch).alias("_gone_batch")), on="_gone_i")
        .with_columns(pl.col("_deleted_at").alias(changed_at), pl.col("_gone_batch").alias(batch),
                      pl.lit(True).alias(IS_DELETED))
        .drop("_gone_i", "_deleted_at", "_gone_batch")
    )
    # the episode a batch belongs to starts where the key (re)appeared after a gap
    episodes = by_key.with_columns(
        _restart=pl.when(pl.col("_prev_i").is_not_null() & (pl.col("_prev_i") < pl.col("_i") - 1))
        .then(pl.col("_ts")))
    episodes = episodes.with_columns(_episode_ts=pl.col("_restart").forward_fill().over(key))
    live = (
        rows.join(episodes.select(*key, batch, "_episode_ts"), on=[*key, batch], how="left")
        .with_columns(
            pl.when(pl.col("_episode_ts").is_not_null() & (pl.col(changed_at) < pl.col("_episode_ts")))
            .then(pl.col("_episode_ts")).otherwise(pl.col(changed_at)).alias(changed_at),
            pl.lit(False).alias(IS_DELETED))
        .drop("_episode_ts")
    )
    return pl.concat([live, tombstones.select(live.collect_schema().names())], how="vertical")
