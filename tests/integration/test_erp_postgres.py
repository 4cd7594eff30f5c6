"""The ERP on the machine's PostgreSQL: incremental extraction by watermark with lookback."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from lakehouse import bronze, silver, storage
from lakehouse.config import load_domain
from tests.conftest import CONFIG_DIR, START

pytestmark = pytest.mark.services


def test_postgres_erp_initial_load_then_incremental_days(tiny, postgres_url, monkeypatch):
    monkeypatch.setenv("RETAIL_ERP_URL", postgres_url)
    cfg = load_domain(CONFIG_DIR)
    assert cfg.source("erp").url == postgres_url
    days = [START + timedelta(days=i) for i in range(3)]
    for day in days:
        tiny.cfg = cfg
        tiny.advance(day)
        bronze.ingest(cfg, "erp", day, "pg-test")
        silver.stage(cfg, "order_lines", day, "pg-test")
    full = storage.scan(cfg.lake, "bronze", "erp__order_lines").filter(
        pl.col("ingest_date") == days[0]).select(pl.len()).collect().item()
    daily = storage.scan(cfg.lake, "bronze", "erp__order_lines").filter(
        pl.col("ingest_date") == days[2]).collect()
    assert full > 10 * daily.height > 0  # the daily runs are incremental
    lookback_start = days[2] - timedelta(days=cfg.source("erp").lookback_days)
    assert daily["updated_at"].min().date() >= lookback_start
    assert silver.build(cfg, "order_lines") > 0
