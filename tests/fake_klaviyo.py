"""A small, fast, in-memory imitation of Klaviyo's token and profiles endpoints over real HTTP.

Used where ``responses`` cannot reach: other threads' and other processes' requests.
It counts the refresh requests it receives and can rotate refresh tokens like Klaviyo may.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs


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


class FakeKlaviyo(LoopbackServer):
    def __init__(
        self,
        *,
        rotate_refresh_tokens: bool = False,
        refresh_delay: float = 0.2,
        expires_in: int = 3600,
        refresh_outage: bool = False,
    ):
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.refresh_outage = refresh_outage
        self.refresh_delay = refresh_delay
        self.expires_in = expires_in
        self.refresh_requests = 0
        self.api_requests = 0
        self._refresh_tokens: set[str] = set()
        self._access_tokens: set[str] = set()
        super().__init__()

    def grant(self, *, access_token: str, refresh_token: str) -> None:
        with self._lock:
            self._access_tokens.add(access_token)
            self._refresh_tokens.add(refresh_token)

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.refresh_requests += 1
        time.sleep(self.refresh_delay)  # widen the window in which racing callers would refresh too
        if self.refresh_outage:
            return 503, {"error": "temporarily_unavailable"}
        token = form.get("refresh_token", "")
        with self._lock:
            if token not in self._refresh_tokens:
                return 400, {"error": "invalid_grant"}
            access = f"at-{uuid.uuid4().hex}"
            self._access_tokens.add(access)
            body = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": "profiles:read",
            }
            if self.rotate_refresh_tokens:
                self._refresh_tokens.discard(token)
                new_refresh = f"rt-{uuid.uuid4().hex}"
                self._refresh_tokens.add(new_refresh)
                body["refresh_token"] = new_refresh
            else:
                body["refresh_token"] = token
            return 200, body

    def _profiles(self, authorization: str) -> tuple[int, dict]:
        with self._lock:
            self.api_requests += 1
            valid = authorization.removeprefix("Bearer ") in self._access_tokens
        if not valid:
            return 401, {
                "errors": [
                    {"status": 401, "code": "authentication_failed", "title": "Incorrect authentication credentials."}
                ]
            }
        return 200, {
            "data": [{"type": "profile", "id": "01FAKEPROFILE", "attributes": {"email": "ada@example.com"}}],
            "links": {"self": "", "next": None, "prev": None},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/oauth/token" and form.get("grant_type") == "refresh_token":
                    self._send(*fake._refresh(form))
                else:
                    self._send(400, {"error": "unsupported_grant_type"})

            def do_GET(self) -> None:
                if self.path.startswith("/api/profiles"):
                    self._send(*fake._profiles(self.headers.get("Authorization", "")))
                else:
                    self._send(404, {"errors": [{"code": "not_found"}]})

        return Handler


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
