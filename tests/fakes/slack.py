"""A Slack stand-in on loopback that speaks the real protocols, for slack-sdk to talk to.

* Incoming webhooks: ``POST /services/...`` with a JSON body, answered ``ok`` (text/html).
* Web API: ``POST /api/chat.postMessage`` with a bearer token, answered ``{"ok": true, ...}``.
* ``rate_limit(n, retry_after)`` answers the next ``n`` requests with HTTP 429 and a
  ``Retry-After`` header, as Slack does.

Every accepted message is kept in ``messages`` (the decoded JSON payload).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSlack:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.requests: list[tuple[float, str, int]] = []  # (time, path, status)
        self._limited, self._retry_after = 0, 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    if fake._limited:
                        fake._limited -= 1
                        fake.requests.append((time.monotonic(), self.path, 429))
                        self.send_response(429)
                        self.send_header("Retry-After", str(fake._retry_after))
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"ok": false, "error": "ratelimited"}')
                        return
                    fake.requests.append((time.monotonic(), self.path, 200))
                if self.path.startswith("/services/"):
                    fake.messages.append(json.loads(body or b"{}"))
                    self._answer(200, b"ok", "text/html")
                elif self.path.startswith("/api/chat.postMessage"):
                    if not self.headers.get("Authorization", "").startswith("Bearer "):
                        self._answer(200, b'{"ok": false, "error": "not_authed"}', "application/json")
                        return
                    ctype = self.headers.get("Content-Type", "")
                    payload = json.loads(body) if "json" in ctype else dict(
                        kv.split("=", 1) for kv in body.decode().split("&") if kv)
                    fake.messages.append(payload)
                    reply = {"ok": True, "channel": payload.get("channel"), "ts": f"{time.time():.6f}"}
                    self._answer(200, json.dumps(reply).encode(), "application/json")
                else:
                    self._answer(404, b"no_service", "text/html")

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/XXXXXXXX"

    def rate_limit(self, n: int, retry_after: int) -> None:
        with self._lock:
            self._limited, self._retry_after = n, retry_after

    def texts(self) -> list[str]:
        return [m.get("text", "") for m in self.messages]

    def __enter__(self) -> FakeSlack:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
