"""Late-arriving facts and dimension members, soft deletes and retention, on the tiny retailer."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from lakehouse import storage
from lakehouse.config import load_domain
from tests.conftest import CONFIG_DIR, START, TINY, run_day_direct

LATE_SKU = "SKU000012"  # TINY's last SKU: its ERP record is keyed in on TINY.end - 2 days
INCIDENT = TINY.end - timedelta(days=2)


def _files(cfg, table: str) -> dict[str, frozenset[str]]:
    """partition -> its data files in the current version: Delta never rewrites a file in
    place (ADR 0019), so other files for a partition mean it was rewritten."""
    out: dict[str, set[str]] = {}
    for f in storage.data_files(cfg.lake, "gold", table):
        key = "/".join(f"{k}={v}" for k, v in storage.hive_values(cfg.lake, "gold", table, f).items())
        out.setdefault(key, set()).add(str(f))
    return {k: frozenset(v) for k, v in out.items()}


def _run(tiny, day: date) -> None:
    tiny.advance(day)
    run_day_direct(tiny.cfg, day)


def test_late_corrections_rewrite_only_the_partitions_they_touch(tiny):
    cfg = tiny.cfg
    _run(tiny, START)
    _run(tiny, START + timedelta(days=1))
    before = _files(cfg, "fct_order_lines")
    day = START + timedelta(days=2)
    _run(tiny, day)
    after = _files(cfg, "fct_order_lines")
    rewritten = {p for p in after if before.get(p) != after[p]}
    # what the run received: changes to lines whose order was placed on earlier dates
    batch = storage.scan(cfg.lake, "silver", "stg_order_lines").filter(
        pl.col("ingest_date").cast(pl.String) == day.isoformat()).select("order_id")
    orders = storage.scan(cfg.lake, "silver", "orders").select("order_id", "ordered_at")
    touched = {f"order_date={d}" for d in batch.join(orders, on="order_id").select(
        pl.col("ordered_at").dt.date().unique()).collect().to_series().to_list()}
    assert any(t < f"order_date={day - timedelta(days=1)}" for t in touched), "no late change in the batch"
    # the recompute is exact: partitions whose content changed, and only those
    assert rewritten <= touched
    assert f"order_date={day}" in rewritten or f"order_date={day - timedelta(days=1)}" in rewritten
    assert len(rewritten) < len(after) / 10
    agg_after = _files(cfg, "agg_sales_category_warehouse_daily")
    assert {p for p in agg_after} >= rewritten  # the aggregate has the same dates


def test_unknown_product_gets_an_inferred_member_completed_in_place(tiny):
    cfg = tiny.cfg
    days = [START + timedelta(days=i) for i in range((INCIDENT - START).days + 2)]
    _run(tiny, days[0])
    dim = storage.scan(cfg.lake, "gold", "dim_product").filter(pl.col("product_id") == LATE_SKU).collect()
    assert dim["is_inferred"].to_list() == [True] and dim["category"].to_list() == [None]
    inferred_sk = dim["product_sk"].item()
    facts = storage.scan(cfg.lake, "gold", "fct_order_lines").filter(pl.col("product_id") == LATE_SKU)
    assert facts.select(pl.col("product_sk").unique()).collect().to_series().to_list() == [inferred_sk]
    old_partitions = _files(cfg, "fct_order_lines")
    for day in days[1:]:
        _run(tiny, day)
    dim = storage.scan(cfg.lake, "gold", "dim_product").filter(pl.col("product_id") == LATE_SKU).collect()
    assert dim["is_inferred"].to_list() == [False] and dim["category"].item() is not None
    assert dim["product_sk"].to_list() == [inferred_sk]  # the real record took over the same key
    # facts loaded before the record arrived were not rewritten, and they join to the completed row
    now = _files(cfg, "fct_order_lines")
    untouched = [p for p in old_partitions if now[p] == old_partitions[p]]
    assert len(untouched) > len(old_partitions) * 0.9
    # (a LazyFrame scan pins the files it planned on: scan again after a publish)
    facts = storage.scan(cfg.lake, "gold", "fct_order_lines").filter(pl.col("product_id") == LATE_SKU)
    joined = facts.join(storage.scan(cfg.lake, "gold", "dim_product"), on="product_sk").collect()
    assert joined.height == facts.collect().height and joined["category"].null_count() == 0
    # every fact key resolves to a dimension row (inferred or real)
    fct = storage.scan(cfg.lake, "gold", "fct_order_lines").select("product_sk", "customer_sk")
    for dim_name, sk in (("dim_product", "product_sk"), ("dim_customer", "customer_sk")):
        dangling = fct.join(storage.scan(cfg.lake, "gold", dim_name), on=sk, how="anti").collect()
        assert dangling.height == 0, f"{dangling.height} facts point at no {dim_name} row"


def test_deleted_supplier_and_closed_accounts_are_versions_not_gaps(tiny):
    cfg = tiny.cfg
    for i in range((INCIDENT - START).days + 2):
        _run(tiny, START + timedelta(days=i))
    sup = storage.scan(cfg.lake, "gold", "dim_supplier").collect()
    gone = sup.filter(pl.col("is_deleted"))
    assert gone.height == 1, "the supplier missing from one snapshot gets one deleted version"
    history = sup.filter(pl.col("supplier_id") == gone["supplier_id"].item()).sort("version")
    assert history["is_deleted"].to_list() == [False, True, False]  # delisted, then listed again
    assert history["is_current"].to_list() == [False, False, True]
    assert history["valid_to"][:2].to_list() == history["valid_from"][1:].to_list()  # contiguous
    cust = storage.scan(cfg.lake, "gold", "dim_customer").collect()
    closed = cust.filter(pl.col("is_deleted"))
    assert closed.height > 0
    reopened = cust.filter(pl.col("customer_id").is_in(closed["customer_id"].implode()),
                           pl.col("is_current"), ~pl.col("is_deleted"))
    assert reopened.height > 0, "a reopened account has a current, not-deleted version"
    assert cust.group_by("customer_id").agg(pl.col("is_current").sum())["is_current"].max() == 1


def test_retention_expires_raw_batches_but_keeps_history(tiny, monkeypatch):
    monkeypatch.setenv("RETAIL_BRONZE_RETENTION_DAYS", "1")
    monkeypatch.setenv("RETAIL_QUARANTINE_RETENTION_DAYS", "1")
    cfg = load_domain(CONFIG_DIR)
    tiny.cfg = cfg
    _run(tiny, START)
    _run(tiny, START + timedelta(days=1))
    silver_before = storage.content_hash(cfg.lake, "silver", "order_lines")
    initial_load = storage.partition_dir(cfg.lake, "bronze", "erp__order_lines", {"ingest_date": START.isoformat()})
    reader = open(initial_load / storage.DATA_FILE, "rb")  # an analyst's query holding the file
    _run(tiny, START + timedelta(days=2))  # START is now older than 1 day: expired
    assert not (initial_load / storage.DATA_FILE).exists()
    assert pl.read_parquet(reader).height > 0  # still readable by whoever had it open
    reader.close()
    retired = list(initial_load.glob(".retired-*"))
    assert retired, "expired partitions are retired, not deleted, within the grace period"
    kept = {p["ingest_date"] for p in storage.partitions(cfg.lake, "bronze", "erp__order_lines")}
    assert START.isoformat() not in kept and (START + timedelta(days=2)).isoformat() in kept
    assert START.isoformat() not in {p["ingest_date"] for p in storage.partitions(cfg.lake, "silver", "quarantine")}
    # silver keeps every validated batch: history is intact after bronze expired
    silver_after = storage.content_hash(cfg.lake, "silver", "order_lines")
    assert silver_after != "empty" and silver_before != silver_after  # day 3 added rows, none were lost
    assert storage.scan(cfg.lake, "silver", "stg_order_lines").filter(
        pl.col("ingest_date").cast(pl.String) == START.isoformat()).select(pl.len()).collect().item() > 0
    assert storage.vacuum(cfg.lake, grace_hours=0)
    assert not list(initial_load.glob(".retired-*"))
