"""Schema drift in the ERP: an added and a retyped column under each policy."""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import polars as pl
import pytest
import sqlalchemy as sa

from lakehouse import bronze, catalog, quality, silver, storage
from lakehouse.silver import QualityGateError
from tests.conftest import START, run_day_direct

DAY = START + timedelta(days=1)


def _policy(cfg, policy: str):
    sources = [s.model_copy(update={"schema_drift": policy}) if s.name == "erp" else s for s in cfg.sources]
    return cfg.model_copy(update={"sources": sources})


def _erp(cfg, sql: str) -> None:
    with sa.create_engine(cfg.source("erp").url).begin() as conn:
        conn.execute(sa.text(sql))


def _checks(cfg, entity: str) -> dict[str, dict]:
    quality.publish_held(cfg, DAY)  # as the run's build_gold (or write_report, on a blocked day) does
    rows = (quality.history(cfg).filter(pl.col("dataset") == f"silver.{entity}",
                                        pl.col("business_date").cast(pl.String) == DAY.isoformat())
            .collect().to_dicts())
    return {r["check"]: r for r in rows}


@pytest.fixture
def drifted(tiny):
    """Day 1's order lines arrive with a new column ``gift_wrap`` (the ERP added it)."""
    tiny.advance(START)
    run_day_direct(tiny.cfg, START)
    tiny.advance(DAY)
    _erp(tiny.cfg, "ALTER TABLE order_lines ADD COLUMN gift_wrap boolean")
    _erp(tiny.cfg, "UPDATE order_lines SET gift_wrap = (quantity % 2 = 0)")
    bronze.ingest(tiny.cfg, "erp", DAY, "test")
    return tiny


def test_fail_blocks_the_batch_naming_column_and_examples(drifted):
    cfg = drifted.cfg
    before = storage.layer_hashes(cfg.lake)
    with pytest.raises(QualityGateError, match=r"bronze\.erp__order_lines ingest_date=.*added gift_wrap "
                                               r"\(examples: \[.*(true|false).*\]\)") as err:
        silver.stage(cfg, "order_lines", DAY, "test")
    assert err.value.check == "schema_drift"
    assert not storage.exists(cfg.lake, "silver", "stg_order_lines", {"ingest_date": DAY.isoformat()})
    assert quality.publish_held(cfg, DAY) == [f"{DAY}/silver.order_lines"]
    after = storage.layer_hashes(cfg.lake)
    assert {t for t in after if after[t] != before.get(t)} == {"gold.quality_checks"}  # only the record
    assert _checks(cfg, "order_lines")["schema_drift"]["status"] == "blocked"


def test_evolve_carries_the_new_column_into_silver_and_its_view(drifted):
    cfg = _policy(drifted.cfg, "evolve")
    silver.stage(cfg, "order_lines", DAY, "test")
    rows = silver.build(cfg, "order_lines")
    lines = storage.scan(cfg.lake, "silver", "order_lines", union_schema=True).collect()
    assert lines.height == rows and lines.schema["gift_wrap"] == pl.Boolean
    assert lines["gift_wrap"].null_count() < lines.height  # the day's rows carry it, older ones read null
    check = _checks(cfg, "order_lines")["schema_drift"]
    assert check["status"] == "evolved" and json.loads(check["detail"])["added"] == ["gift_wrap"]
    catalog.build_catalog(cfg)
    with duckdb.connect(cfg.catalog_path, read_only=True) as con:
        assert con.execute("SELECT count(gift_wrap) FROM silver.order_lines").fetchone()[0] > 0


def test_rescue_keeps_the_new_column_as_json_and_the_schema_still(drifted):
    cfg = _policy(drifted.cfg, "rescue")
    silver.stage(cfg, "order_lines", DAY, "test")
    silver.build(cfg, "order_lines")
    lines = storage.scan(cfg.lake, "silver", "order_lines", union_schema=True).collect()
    assert "gift_wrap" not in lines.columns
    rescued = lines["_rescued"].drop_nulls()
    assert rescued.len() > 0 and set(json.loads(rescued[0])) == {"gift_wrap"}
    assert _checks(cfg, "order_lines")["schema_drift"]["status"] == "rescued"


def test_a_retyped_column_blocks_under_fail_and_is_cast_under_evolve(tiny):
    tiny.advance(START)
    run_day_direct(tiny.cfg, START)
    tiny.advance(DAY)
    # the ERP now stores quantity as text (SQLite has no ALTER COLUMN TYPE: swap the column)
    for sql in ("ALTER TABLE order_lines RENAME COLUMN quantity TO quantity_int",
                "ALTER TABLE order_lines ADD COLUMN quantity TEXT",
                "UPDATE order_lines SET quantity = CAST(quantity_int AS TEXT)",
                "ALTER TABLE order_lines DROP COLUMN quantity_int"):
        _erp(tiny.cfg, sql)
    bronze.ingest(tiny.cfg, "erp", DAY, "test")
    with pytest.raises(QualityGateError, match=r"retyped quantity: Int64 -> String"):
        silver.stage(tiny.cfg, "order_lines", DAY, "test")
    out = silver.stage(_policy(tiny.cfg, "evolve"), "order_lines", DAY, "test")
    assert out["valid"] > 0 and out["rows_in"] == out["valid"] + out["quarantined"]
    staged = storage.scan(tiny.cfg.lake, "silver", "stg_order_lines").collect()
    assert staged.schema["quantity"] == pl.Int64  # cast back to the contract's type
