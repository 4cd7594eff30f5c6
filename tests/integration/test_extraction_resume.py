"""Extraction fails after k of n API pages, then resumes: no duplicates, no gaps, and the
watermark never passes data that was not loaded."""

from __future__ import annotations

import polars as pl
import pytest
import requests

from lakehouse import bronze, storage
from lakehouse.extract.rest import RestError
from tests.conftest import START

TABLE = "supplier_api__supplier_performance"


def test_a_failure_after_two_pages_publishes_nothing_and_the_rerun_loads_everything_once(tiny):
    tiny.advance(START)
    source = tiny.cfg.source("supplier_api").model_copy(update={"page_size": 5, "max_retries": 1,
                                                                "backoff_s": 0.01})
    cfg = tiny.cfg.model_copy(update={"sources": [source if s.name == source.name else s
                                                  for s in tiny.cfg.sources]})
    api_rows = pl.read_parquet(tiny.api_file)
    assert api_rows.height > 10  # more than two pages: the failure is mid-extraction
    control = f"{tiny.api_url}/_control"
    requests.post(control, json={"fail_after_pages": 2}, timeout=5).raise_for_status()
    with pytest.raises(RestError, match="page 3 -> HTTP 503"):
        bronze.ingest(cfg, source.name, START, "run-1")
    assert not storage.exists(cfg.lake, "bronze", TABLE, {"ingest_date": START.isoformat()})
    watermark = storage.state_path(cfg.lake, "watermarks", f"{source.name}.json")
    assert storage.read_json(watermark, {}) == {}  # not advanced past what was never loaded

    requests.post(control, json={"fail_after_pages": None}, timeout=5).raise_for_status()
    bronze.ingest(cfg, source.name, START, "run-2")
    loaded = storage.scan(cfg.lake, "bronze", TABLE).collect()
    keys = ["supplier_id", "performance_date"]
    assert loaded.select(keys).is_duplicated().sum() == 0  # no duplicates
    in_window = api_rows.filter(pl.col("updated_at") < pl.lit(START).cast(pl.Datetime("us")) + pl.duration(days=1))
    assert loaded.height == in_window.height  # no gaps
    mark = storage.read_json(watermark, {})
    newest = mark["max_updated_at"]["supplier_performance"]
    assert newest.startswith(str(in_window["updated_at"].max()))  # exactly what was loaded
