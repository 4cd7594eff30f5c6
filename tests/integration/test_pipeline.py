"""The whole pipeline on a tiny retailer, run step by step (the Airflow path is tested apart)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl

from lakehouse import storage
from tests.conftest import START, comparable_hashes, run_day_direct

DAYS = [START + timedelta(days=i) for i in range(3)]


def _source_lines(cfg) -> pl.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(cfg.source("erp").url)
    with engine.connect() as conn:
        return pl.read_database("SELECT order_line_id FROM order_lines", conn)


def _quarantined_keys(cfg, entity: str, keys: list[str]) -> pl.DataFrame:
    q = storage.scan(cfg.lake, "silver", "quarantine").filter(pl.col("entity") == entity).collect()
    records = [json.loads(r) for r in q["record"]]
    return pl.DataFrame([{k: r[k] for k in keys} for r in records]).unique() if records else \
        pl.DataFrame(schema={k: pl.String for k in keys})


def reconcile(cfg) -> dict[str, int]:
    """Every source order line and count row is exactly once in gold or exactly once in quarantine."""
    source = set(_source_lines(cfg)["order_line_id"])
    gold = storage.scan(cfg.lake, "gold", "fct_order_lines").select("order_line_id").collect()
    assert gold["order_line_id"].is_duplicated().sum() == 0, "an order line is twice in gold"
    quarantined = set(_quarantined_keys(cfg, "order_lines", ["order_line_id"])["order_line_id"])
    in_gold = set(gold["order_line_id"])
    assert not in_gold & quarantined, "an order line is both in gold and in quarantine"
    assert in_gold | quarantined == source, (
        f"lost: {sorted(source - in_gold - quarantined)[:5]}, extra: {sorted((in_gold | quarantined) - source)[:5]}")

    files = sorted(Path(cfg.source("inventory_drop").landing_dir).glob("*.*"))
    from lakehouse.extract.files import read_raw

    counts = pl.concat([read_raw(f).select("count_date", "warehouse_id", "sku") for f in files])
    counts = counts.with_columns(pl.col("count_date").str.slice(0, 10))
    fct = storage.scan(cfg.lake, "gold", "fct_inventory_daily").select(
        pl.col("count_date").cast(pl.String), "warehouse_id", pl.col("product_id").alias("sku")).collect()
    assert fct.is_duplicated().sum() == 0
    q_inv = _quarantined_keys(cfg, "inventory_counts", ["count_date", "warehouse_id", "sku"]).with_columns(
        pl.col("count_date").str.slice(0, 10))
    assert fct.join(q_inv, on=fct.columns, how="semi").height == 0
    assert counts.height == fct.height + q_inv.height
    return {"source_lines": len(source), "gold_lines": len(in_gold), "quarantined_lines": len(quarantined),
            "count_rows": counts.height, "quarantined_counts": q_inv.height}


def test_three_days_reconcile_source_to_gold(tiny):
    for day in DAYS:
        tiny.advance(day)
        run_day_direct(tiny.cfg, day)
    figures = reconcile(tiny.cfg)
    assert figures["quarantined_lines"] > 0 and figures["gold_lines"] > 1000
    forecastable = storage.scan(tiny.cfg.lake, "gold", "dim_date").collect()
    assert forecastable["date"].max() > DAYS[-1]
    # `lakehouse status` reports the same figures the lake holds
    from lakehouse.status import lake_status, render

    status = {f"{s.layer}.{s.table}": s for s in lake_status(tiny.cfg)}
    assert status["gold.fct_order_lines"].rows == figures["gold_lines"]
    assert status["bronze.erp__order_lines"].latest_partition == DAYS[-1]
    assert all(s.written_hours_ago < 1 for s in status.values())
    text = render(tiny.cfg)
    assert "gold.fct_order_lines" in text and "order_lines" in text.split("quarantine (rejected rows)")[1]
    assert "silver.order_lines" in text.split("quality checks on the latest")[1]
    # its quarantine counts are the analyst's: the catalog view, which shows a record re-read
    # by a lookback once (the raw table holds it once per batch that rejected it)
    import duckdb

    from lakehouse.status import quarantine_summary

    # the latest day a batch was staged, whether or not it rejected anything
    latest = max(p["ingest_date"] for c in tiny.cfg.contracts
                 for p in storage.partitions(tiny.cfg.lake, "silver", f"stg_{c.entity}"))
    with duckdb.connect(str(tiny.cfg.catalog_path), read_only=True) as con:
        view = {(e, r): (n, m) for e, r, n, m in con.execute(
            "SELECT entity, rule, count(*), count(*) FILTER (WHERE ingest_date::VARCHAR = ?) "
            "FROM silver.quarantine GROUP BY ALL", [latest]).fetchall()}
    raw_rows = storage.row_count(tiny.cfg.lake, "silver", "quarantine")  # every rejection, as stored
    summary = quarantine_summary(tiny.cfg)
    assert set(summary["latest_day"]) == {latest}
    shown = {(r["entity"], r["rule"]): (r["rows_total"], r["rows_latest_day"])
             for r in summary.iter_rows(named=True)}
    assert shown == view and sum(n for n, _ in view.values()) < raw_rows  # lookbacks re-read some
    accounted(tiny.cfg)


def accounted(cfg) -> None:
    """Per entity and day: bronze rows = staged rows + quarantined rows + exact copies collapsed
    into an earlier row, and the quality history says so (rows checked, rows quarantined,
    copies collapsed)."""
    stg = {c.entity: storage.scan(cfg.lake, "silver", f"stg_{c.entity}", missing_ok=True) for c in cfg.contracts}
    quarantine = storage.scan(cfg.lake, "silver", "quarantine").group_by(
        "entity", pl.col("ingest_date").cast(pl.String)).agg(pl.len().alias("q")).collect()
    checks = storage.scan(cfg.lake, "gold", "quality_checks").filter(
        pl.col("check").is_in(["quarantine_rate", "exact_duplicate"])).collect()
    for contract in cfg.contracts:
        table = f"{contract.source}__{contract.entity}"
        for part in storage.partitions(cfg.lake, "bronze", table):
            day = part["ingest_date"]
            raw = pl.scan_parquet(storage.partition_dir(cfg.lake, "bronze", table, part) / storage.DATA_FILE)
            rows_in, distinct = raw.select(pl.len(), pl.col("_record_hash").n_unique()).collect().row(0)
            copies = rows_in - distinct if rows_in else 0
            staged = stg[contract.entity].filter(pl.col("ingest_date").cast(pl.String) == day).select(
                pl.len()).collect().item()
            q = quarantine.filter(entity=contract.entity, ingest_date=day)["q"].sum()
            assert rows_in == staged + q + copies, (contract.entity, day, rows_in, staged, q, copies)
            of_day = checks.filter(pl.col("dataset") == f"silver.{contract.entity}",
                                   pl.col("business_date").cast(pl.String) == day)
            gate = of_day.filter(pl.col("check") == "quarantine_rate").row(0, named=True)
            assert (gate["rows_checked"], gate["failing_count"], gate["status"]) == (rows_in, q, "pass")
            collapsed = of_day.filter(pl.col("check") == "exact_duplicate").row(0, named=True)
            assert (collapsed["failing_count"], collapsed["status"]) == (copies, "collapsed" if copies else "pass")


def test_rerunning_a_day_changes_no_layer(tiny):
    for day in DAYS[:2]:
        tiny.advance(day)
        run_day_direct(tiny.cfg, day)
    before = storage.layer_hashes(tiny.cfg.lake)
    run_day_direct(tiny.cfg, DAYS[1])
    run_day_direct(tiny.cfg, DAYS[0])
    assert storage.layer_hashes(tiny.cfg.lake) == before
    assert len(before) > 20


def test_scd2_history_follows_source_changes(tiny):
    """A product whose price changes between daily runs gets a second version in gold."""
    import sqlalchemy as sa

    tiny.advance(DAYS[0])
    run_day_direct(tiny.cfg, DAYS[0])
    before = storage.scan(tiny.cfg.lake, "gold", "dim_product").filter(
        pl.col("product_id") == "SKU000001").collect().height
    engine = sa.create_engine(tiny.cfg.source("erp").url)
    changed_at = f"{DAYS[1]} 09:30:00.000000"
    with engine.begin() as conn:  # the ERP keys in a new version (its tables are system-versioned)
        conn.execute(sa.text(
            "INSERT INTO products SELECT product_id, name, category, supplier_id, unit_price * 2, is_discontinued, :t "
            "FROM products WHERE product_id = 'SKU000001' ORDER BY updated_at DESC LIMIT 1"), {"t": changed_at})
    run_day_direct(tiny.cfg, DAYS[1])
    dim = storage.scan(tiny.cfg.lake, "gold", "dim_product").filter(
        pl.col("product_id") == "SKU000001").sort("version").collect()
    assert before >= 1 and dim["version"].to_list() == list(range(1, before + 2))
    assert dim["is_current"].to_list() == [False] * before + [True]
    assert dim["valid_to"][-2] == dim["valid_from"][-1]
    assert dim["unit_price"][-1] == dim["unit_price"][-2] * 2


def test_rebuild_from_bronze_alone_equals_the_incremental_lake(tiny):
    import shutil

    from lakehouse.rebuild import rebuild

    for day in DAYS:
        tiny.advance(day)
        run_day_direct(tiny.cfg, day)
    incremental = comparable_hashes(tiny.cfg.lake)
    for layer in ("silver", "gold"):
        shutil.rmtree(tiny.cfg.lake / layer)
    rebuild(tiny.cfg, run_id="test")
    # tiers 1-2 of the quality history are re-recorded; tier-3 verdicts are not bronze's to rebuild
    assert comparable_hashes(tiny.cfg.lake) == incremental


def test_days_processed_in_any_order_give_the_same_silver_and_gold(tiny, tmp_path_factory):
    """Backfilling late days before early ones (sources as they stand today) changes nothing above bronze."""
    import random

    from tests.conftest import TINY, TinyRetail

    days = [START + timedelta(days=i) for i in range(4)]
    tiny.advance(days[-1], TINY)
    shuffled = [days[0], *random.Random(3).sample(days[1:], k=3)]  # the initial load comes first
    assert shuffled != days
    other = TinyRetail(tmp_path_factory.mktemp("shuffled"), tiny.api_url, tiny.api_file)
    other.advance(days[-1], TINY)
    for day in days:
        run_day_direct(tiny.cfg, day)
    for day in shuffled:
        run_day_direct(other.cfg, day)

    def above_bronze(lake) -> dict[str, str]:
        # which batch delivered a row (its lineage) depends on the order, and so do the
        # per-batch records (quarantine, quality history); the data must not
        hashes = storage.layer_hashes(lake, ignore={"ingest_date", "_source_pointer"})
        return {t: h for t, h in hashes.items()
                if not t.startswith(("bronze.", "silver.stg_", "silver.quarantine", "gold.quality_checks"))}

    in_order = above_bronze(tiny.cfg.lake)
    assert len(in_order) > 15
    assert above_bronze(other.cfg.lake) == in_order


def test_no_raw_pii_in_silver_or_gold_and_tokens_still_join(tiny):
    """Customer names and e-mails are keyed tokens in every silver and gold table (quarantine
    included); bronze keeps what the ERP sent; facts still join their customer."""
    import re

    tiny.advance(DAYS[0])
    run_day_direct(tiny.cfg, DAYS[0])
    email, name = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}"), re.compile(r"Customer \d+")
    raw = storage.scan(tiny.cfg.lake, "bronze", "erp__customers").collect()
    assert raw["email"].str.contains("@").any()  # the source does hold PII
    for layer in ("silver", "gold"):
        for table in storage.tables(tiny.cfg.lake, layer):
            frame = storage.scan(tiny.cfg.lake, layer, table).collect()
            for col, dtype in frame.schema.items():
                if dtype == pl.String:
                    text = "\n".join(frame[col].drop_nulls().to_list())
                    assert not email.search(text) and not name.search(text), f"{layer}.{table}.{col}"
    dim = storage.scan(tiny.cfg.lake, "gold", "dim_customer").collect()
    assert dim["name"].drop_nulls().str.starts_with("pii_").all() and dim["name"].drop_nulls().len() > 0
    silver = storage.scan(tiny.cfg.lake, "silver", "customers").collect()
    assert silver["email"].drop_nulls().str.starts_with("pii_").all()
    fct = storage.scan(tiny.cfg.lake, "gold", "fct_order_lines").collect()
    joined = fct.join(dim, on="customer_sk", how="inner")
    assert joined.height == fct.height  # every fact finds its (tokenised) customer
