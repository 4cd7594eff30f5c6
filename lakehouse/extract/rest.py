"""Paginated REST extraction with timeouts, exponential backoff and Retry-After."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from lakehouse.config import RestSource
from lakehouse.extract.base import Extracted, Window

RETRY_STATUSES = (429, 500, 502, 503, 504)


class RestError(RuntimeError):
    """The API failed after its retries, or answered with something that is not a page."""


def session_for(source: RestSource) -> requests.Session:
    """A session that retries transient failures the way urllib3 does best.

    Exponential backoff (``backoff_s * 2**n``), ``Retry-After`` honoured on 429/503,
    and every call still carries an explicit timeout.
    """
    retry = Retry(
        total=source.max_retries, connect=source.max_retries, read=source.max_retries,
        status=source.max_retries, backoff_factor=source.backoff_s, status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}), respect_retry_after_header=True, raise_on_status=False,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class RestExtractor:
    """Follows ``next_page`` through ``{"data": [...], "next_page": n|null}`` pages."""

    def __init__(self, source: RestSource) -> None:
        self.source = source
        self.name = source.name

    def extract(self, window: Window) -> Iterator[Extracted]:
        src = self.source
        params = {"updated_before": window.end.isoformat(), "page_size": src.page_size}
        if window.start is not None:
            params["updated_since"] = window.start.isoformat()
        page: int | None = 1
        with session_for(src) as session:
            while page is not None:
                current = page
                url = f"{src.base_url.rstrip('/')}{src.path}"
                try:
                    resp = session.get(url, params={**params, "page": page}, timeout=src.timeout_s)
                except requests.RequestException as exc:
                    raise RestError(f"{src.name}: GET {url} page {page} failed: {exc}") from exc
                if resp.status_code != 200:
                    raise RestError(f"{src.name}: GET {url} page {page} -> HTTP {resp.status_code}: "
                                    f"{resp.text[:200]}")
                try:
                    body = resp.json()
                    rows, page = body["data"], body.get("next_page")
                except (ValueError, KeyError, TypeError) as exc:
                    raise RestError(f"{src.name}: page {page} of {url} is not a data page: "
                                    f"{resp.text[:200]!r}") from exc
                frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
                yield Extracted(src.entity, frame, pl.lit(f"{src.path}?page={current}"))
