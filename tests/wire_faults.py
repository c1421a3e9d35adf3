"""Transport faults on the wire, scripted request by request: resets, stalls, garbage, 429 storms.

The sandbox (``klaviyo_sandbox``) imitates Klaviyo's behaviour; this server only plays
back what a test scripts, including what no Django view can do (dropping a connection
without an answer), so that urllib3's real retry and timeout paths are exercised.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 and a free port, running inside a ``with`` block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


class ScriptedServer(LoopbackServer):
    """Answers each request with the next scripted step, over real HTTP on loopback.

    A step is ``(status, headers, body)``, ``("sleep", seconds)`` to stall before answering
    with 200, or ``("reset",)`` to drop the connection without an answer.
    """

    def __init__(self, steps: list[tuple]):
        self.steps = list(steps)
        self.requests: list[tuple[str, float]] = []
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with server._lock:
                    server.requests.append((self.path, time.monotonic()))
                    step = server.steps.pop(0) if server.steps else (500, {}, "script exhausted")
                if step[0] == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if step[0] == "sleep":
                    time.sleep(step[1])
                    step = (200, {}, json.dumps({"data": []}))
                status, headers, body = step
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        return Handler
