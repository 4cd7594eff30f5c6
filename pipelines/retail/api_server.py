"""The supplier REST API: a small local HTTP server over the simulator's data.

``GET /v1/supplier-performance?updated_since=&updated_before=&page=&page_size=``
answers ``{"data": [...], "next_page": n | null}``. ``POST /_control`` with
``{"fail_next": n, "status": 429|5xx, "retry_after": s, "delay_s": s}`` makes the
next ``n`` calls fail or answer slowly, and ``{"malformed_next": n}`` makes the next ``n``
data pages answer 200 with a cut-off JSON body, and ``{"fail_after_pages": k}`` serves k
pages and then fails every page after the k-th until cleared (``null``), so extractors meet
real failure modes.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import polars as pl


class SupplierApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], data_file: Path) -> None:
        super().__init__(address, _Handler)
        self.data_file = data_file
        self.faults = {"fail_next": 0, "status": 503, "retry_after": None, "delay_s": 0.0, "malformed_next": 0,
                       "fail_after_pages": None}
        self.calls = 0
        self.lock = threading.Lock()

    def rows(self) -> pl.DataFrame:
        if not self.data_file.exists():
            return pl.DataFrame(schema={"supplier_id": pl.String, "updated_at": pl.Datetime("us")})
        return pl.read_parquet(self.data_file)


class _Handler(BaseHTTPRequestHandler):
    server: SupplierApi

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        if self.path != "/_control":
            return self._send(404, {"error": "not found"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            self.server.faults.update(body)
        self._send(200, {"faults": self.server.faults})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            return self._send(200, {"status": "ok", "calls": self.server.calls})
        if url.path != "/v1/supplier-performance":
            return self._send(404, {"error": "not found"})
        with self.server.lock:
            self.server.calls += 1
            faults = self.server.faults
            failing = faults["fail_next"] > 0
            if failing:
                faults["fail_next"] -= 1
            page_no = int(parse_qs(url.query).get("page", ["1"])[0] or 1)
            if faults["fail_after_pages"] is not None and page_no > int(faults["fail_after_pages"]):
                failing = True
        if faults["delay_s"]:
            time.sleep(float(faults["delay_s"]))
        if failing:
            headers = {"Retry-After": str(faults["retry_after"])} if faults["retry_after"] is not None else {}
            return self._send(int(faults["status"]), {"error": "injected failure"}, headers)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            page, size = int(q.get("page", 1)), min(int(q.get("page_size", 500)), 10_000)
            rows = self.server.rows()
            if "updated_since" in q:
                rows = rows.filter(pl.col("updated_at") >= datetime.fromisoformat(q["updated_since"]))
            if "updated_before" in q:
                rows = rows.filter(pl.col("updated_at") < datetime.fromisoformat(q["updated_before"]))
        except ValueError as exc:
            return self._send(400, {"error": str(exc)})
        rows = rows.sort("updated_at", "supplier_id")
        chunk = rows.slice((page - 1) * size, size)
        more = page * size < rows.height
        data = chunk.with_columns(pl.col(pl.Date, pl.Datetime).dt.to_string()).to_dicts()
        with self.server.lock:
            malformed = faults["malformed_next"] > 0
            if malformed:
                faults["malformed_next"] -= 1
        if malformed:  # a proxy or a crashed worker cut the body off mid-stream
            body = json.dumps({"data": data}, default=str).encode()[:-40]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        self._send(200, {"data": data, "next_page": page + 1 if more else None})


def serve(data_file: Path, host: str = "127.0.0.1", port: int = 0) -> SupplierApi:
    """Start the API in a background thread; ``server.server_address`` tells the port."""
    server = SupplierApi((host, port), data_file)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    args = parser.parse_args()
    server = SupplierApi((args.host, args.port), args.data_file)
    print(f"supplier API on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
