"""A fast imitation of Klaviyo's token endpoint and profiles API, for benchmarks.

One process, one asyncio event loop, a hand-written HTTP/1.1 parser on
``asyncio.Protocol`` (no ``http.server``): keep-alive, ``Content-Length`` bodies only.
Responses are built once at start-up, so the server costs a few tens of microseconds per
request and is never what limits a benchmark (``python -m bench`` measures it directly).

Endpoints:

* ``GET /api/profiles``: a page of 20 realistic profiles (about 20 KB of JSON:API) for
  any ``Authorization: Bearer at-...``; 401 otherwise.
* ``GET /api/accounts``: one account.
* ``POST /oauth/token`` (``grant_type=refresh_token``, refresh token ``rt-...``): a new
  access token of JWT length (about 500 characters); the refresh token is kept.
* ``POST /oauth/revoke``: 200.
* ``GET /_stats``: counters (requests by kind, connections accepted) as JSON. ``POST /_reset``: zero them.
  ``POST /_config?refresh_delay=SECONDS``: delay every refresh answer (without blocking
  other requests).

Run: ``python -m bench.upstream [--port N]``; prints ``listening on PORT`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
from urllib.parse import parse_qs, urlsplit

MAX_HEADER_BYTES = 64 * 1024


def _profile(number: int) -> dict[str, object]:
    pid = f"01J{number:023d}"
    return {
        "type": "profile",
        "id": pid,
        "attributes": {
            "email": f"customer{number}@example.com",
            "phone_number": f"+1555{number:07d}",
            "external_id": f"ext-{number}",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "organization": "Analytical Engines Ltd",
            "locale": "en-US",
            "title": "Engineer",
            "image": f"https://images.example.com/{pid}.png",
            "created": "2025-01-05T10:00:00+00:00",
            "updated": "2026-06-01T08:30:00+00:00",
            "last_event_date": "2026-06-01T08:30:00+00:00",
            "location": {
                "address1": "12 St James's Square",
                "address2": None,
                "city": "London",
                "country": "United Kingdom",
                "latitude": "51.5074",
                "longitude": "-0.1360",
                "region": "England",
                "zip": "SW1Y 4JH",
                "timezone": "Europe/London",
                "ip": "192.0.2.10",
            },
            "properties": {"plan": "pro", "lifetime_value": 1234.5, "newsletter": True},
        },
        "relationships": {
            "lists": {"links": {"self": f"https://a.klaviyo.com/api/profiles/{pid}/relationships/lists/"}},
            "segments": {"links": {"self": f"https://a.klaviyo.com/api/profiles/{pid}/relationships/segments/"}},
        },
        "links": {"self": f"https://a.klaviyo.com/api/profiles/{pid}/"},
    }


PROFILES_PAGE = json.dumps(
    {
        "data": [_profile(n) for n in range(20)],
        "links": {
            "self": "https://a.klaviyo.com/api/profiles",
            "next": "https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=bmV4dDo6aWQ6OjE",
            "prev": None,
        },
    },
    separators=(",", ":"),
).encode()
ACCOUNTS = json.dumps(
    {
        "data": [
            {"type": "account", "id": "BENCH1", "attributes": {"contact_information": {"organization_name": "Bench"}}}
        ]
    }
).encode()
UNAUTHORIZED = b'{"errors":[{"status":401,"code":"authentication_failed","title":"Incorrect authentication."}]}'
NOT_FOUND = b'{"errors":[{"status":404,"code":"not_found","title":"Not found."}]}'
INVALID_GRANT = b'{"error":"invalid_grant"}'
UNSUPPORTED = b'{"error":"unsupported_grant_type"}'
REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}


def response(status: int, body: bytes, content_type: bytes = b"application/vnd.api+json") -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (status, REASONS[status], content_type, len(body))
        + body
    )


PROFILES_RESPONSE = response(200, PROFILES_PAGE)
ACCOUNTS_RESPONSE = response(200, ACCOUNTS)
UNAUTHORIZED_RESPONSE = response(401, UNAUTHORIZED)
NOT_FOUND_RESPONSE = response(404, NOT_FOUND)
EMPTY_OK = response(200, b"{}", b"application/json")


class State:
    def __init__(self) -> None:
        self.refresh_delay = 0.0
        self.reset()

    def reset(self) -> None:
        self.refresh_requests = 0
        self.api_requests = 0
        self.other_requests = 0
        self.connections = 0

    def stats(self) -> bytes:
        body = {
            "refresh_requests": self.refresh_requests,
            "api_requests": self.api_requests,
            "other_requests": self.other_requests,
            "connections": self.connections,
            "refresh_delay": self.refresh_delay,
        }
        return response(200, json.dumps(body).encode(), b"application/json")


def new_access_token() -> str:
    # Klaviyo's access tokens are JWTs of about 500 characters.
    return "at-" + secrets.token_urlsafe(375)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a delayed answer is pending: answer in order

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.waiting:
            self.process()

    def process(self) -> None:
        while self.buffer and not self.waiting:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()  # type: ignore[union-attr]
                return
            head = self.buffer[:end].split(b"\r\n")
            method, target, _ = head[0].split(b" ", 2)
            length = 0
            authorization = b""
            close = False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"authorization":
                    authorization = value.strip()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.handle(method, target, authorization, body, close)

    def handle(self, method: bytes, target: bytes, authorization: bytes, body: bytes, close: bool) -> None:
        state = self.state
        path = target.split(b"?", 1)[0]
        if method == b"GET" and path == b"/api/profiles":
            state.api_requests += 1
            ok = authorization.startswith(b"Bearer at-")
            self.send(PROFILES_RESPONSE if ok else UNAUTHORIZED_RESPONSE, close)
        elif method == b"GET" and path == b"/api/accounts":
            state.api_requests += 1
            ok = authorization.startswith(b"Bearer at-")
            self.send(ACCOUNTS_RESPONSE if ok else UNAUTHORIZED_RESPONSE, close)
        elif method == b"POST" and path == b"/oauth/token":
            state.refresh_requests += 1
            answer = self.token(body)
            if state.refresh_delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(state.refresh_delay, self.send_delayed, answer, close)
            else:
                self.send(answer, close)
        elif method == b"POST" and path == b"/oauth/revoke":
            state.other_requests += 1
            self.send(EMPTY_OK, close)
        elif path == b"/_stats":
            self.send(state.stats(), close)
        elif method == b"POST" and path == b"/_reset":
            state.reset()
            self.send(state.stats(), close)
        elif method == b"POST" and path == b"/_config":
            query = parse_qs(urlsplit(target.decode()).query)
            state.refresh_delay = float(query.get("refresh_delay", ["0"])[0])
            self.send(state.stats(), close)
        else:
            state.other_requests += 1
            self.send(NOT_FOUND_RESPONSE, close)

    @staticmethod
    def token(body: bytes) -> bytes:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return response(400, UNSUPPORTED, b"application/json")
        refresh_token = form.get("refresh_token", "")
        if not refresh_token.startswith("rt-"):
            return response(400, INVALID_GRANT, b"application/json")
        grant = {
            "access_token": new_access_token(),
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": refresh_token,
            "scope": "accounts:read profiles:read",
        }
        return response(200, json.dumps(grant).encode(), b"application/json")

    def send(self, data: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if close:
            transport.close()

    def send_delayed(self, data: bytes, close: bool) -> None:
        self.waiting = False
        self.send(data, close)
        self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int) -> None:
    state = State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(state), "127.0.0.1", port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0")))
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
