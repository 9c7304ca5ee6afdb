"""A fake SearxNG (the self-hosters' metasearch) for tests: its JSON API only.

``GET /search?q=...&format=json`` answers ``{"query": q, "results": [{"title", "url",
"content", "engine"}], ...}`` with the results given to ``results()`` (the same for every
query), or ``status`` with an error page. Every query is recorded in ``queries``.

    with FakeSearxng() as searx:
        searx.results([{"title": "Trail news", "url": "https://example.org/trail", "content": "Open."}])
        settings.SEARCH_URL = searx.url + "/search"
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        fake = self.server.fake
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        with fake.lock:
            fake.queries.append(params.get("q", [""])[0])
            status, results, gate = fake.status, list(fake._results), fake.gate
        if gate is not None:
            gate.wait(10)  # a slow search engine, until the test lets it answer
        if parts.path != "/search" or params.get("format") != ["json"]:
            status = 403  # SearxNG refuses formats that are not enabled
        if status != 200:
            body = b"<html>error</html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
        else:
            query = params.get("q", [""])[0]
            body = json.dumps(
                {"query": query, "number_of_results": len(results), "results": results}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSearxng


class FakeSearxng:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queries: list[str] = []
        self.status = 200
        # Set to an unset threading.Event: every search waits for it (at most 10 s).
        self.gate: threading.Event | None = None
        self._results: list[dict[str, Any]] = []
        self._server: _Server | None = None

    def results(self, results: list[dict[str, Any]]) -> None:
        with self.lock:
            self._results = [{"engine": "fake", **result} for result in results]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeSearxng:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
