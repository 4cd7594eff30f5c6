"""The REST extractor against the real supplier API server on loopback."""

from datetime import date, datetime

import polars as pl
import pytest
import requests

from lakehouse.config import RestSource
from lakehouse.extract import Window
from lakehouse.extract.rest import RestError, RestExtractor
from pipelines.retail.api_server import serve


@pytest.fixture
def api(tmp_path):
    data = pl.DataFrame({
        "supplier_id": [f"SUP{i:04d}" for i in range(25)],
        "performance_date": [date(2024, 1, 1)] * 25,
        "lead_time_days": list(range(25)),
        "fill_rate": [0.9] * 25,
        "updated_at": [datetime(2024, 1, 1, i % 24) for i in range(25)],
    })
    data.write_parquet(tmp_path / "sp.parquet")
    server = serve(tmp_path / "sp.parquet")
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _source(url: str, **kw) -> RestSource:
    return RestSource(kind="rest", name="supplier_api", base_url=url, entity="supplier_performance",
                      path="/v1/supplier-performance", page_size=10, backoff_s=0.01, **kw)


def _inject(url: str, **faults) -> None:
    requests.post(f"{url}/_control", json=faults, timeout=5).raise_for_status()


def _all_rows(source: RestSource) -> pl.DataFrame:
    chunks = list(RestExtractor(source).extract(Window(None, datetime(2030, 1, 1))))
    assert [c.entity for c in chunks] == ["supplier_performance"] * len(chunks)
    return pl.concat([c.frame for c in chunks])


def test_pagination_returns_every_row_once(api):
    _, url = api
    rows = _all_rows(_source(url))
    assert rows.height == 25 and rows["supplier_id"].n_unique() == 25


@pytest.mark.parametrize("status,retry_after", [(429, 1), (503, None), (500, None)])
def test_transient_failures_are_retried(api, status, retry_after):
    server, url = api
    _inject(url, fail_next=2, status=status, retry_after=retry_after)
    before = server.calls
    assert _all_rows(_source(url)).height == 25
    assert server.calls - before == 3 + 2  # three pages plus two failed attempts


def test_persistent_failure_names_the_url_and_status(api):
    _, url = api
    _inject(url, fail_next=50, status=503)
    with pytest.raises(RestError, match=r"supplier-performance page 1 .*503"):
        _all_rows(_source(url, max_retries=2))


def test_slow_api_times_out_instead_of_hanging(api):
    _, url = api
    _inject(url, fail_next=0, delay_s=1.0)
    with pytest.raises(RestError, match="timed out|Read timed out|failed"):
        _all_rows(_source(url, max_retries=0, timeout_s=0.2))
    _inject(url, delay_s=0)


def test_a_malformed_json_page_fails_naming_page_and_body(api):
    _, url = api
    _inject(url, malformed_next=1)
    with pytest.raises(RestError, match=r"page 1 of .*supplier-performance is not a data page: .*'\{\"data\""):
        _all_rows(_source(url))
    assert _all_rows(_source(url)).height == 25  # the next extraction gets every row
