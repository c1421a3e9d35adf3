"""A fast imitation of Klaviyo's token endpoint and profiles API, for benchmarks.

One process, one asyncio event loop, ``asyncio.Protocol`` with the bench's own HTTP/1.1
parser (``bench/http1.py``), keep-alive. The default first page is built once at start-up
and other pages are cached, so the server costs a few tens of microseconds per request
and is never what limits a benchmark (``python -m bench`` measures it directly).

Endpoints:

* ``GET /api/profiles``: a page of realistic profiles (about 1 KB of JSON:API each) for any
  ``Authorization: Bearer at-...``; 401 otherwise. ``page[size]`` 1-100 (default 20) and
  ``page[cursor]``; ``links.next`` is the full URL of the next page, ``null`` on the last.
* ``GET /api/accounts``: one account.
* ``POST /oauth/token`` (``grant_type=refresh_token``, refresh token ``rt-...``): a new
  access token of JWT length (about 500 characters). The refresh token is kept, or with
  rotation on replaced by a new one, the old one then answering ``invalid_grant``.
* ``POST /oauth/revoke``: 200; a revoked refresh token answers ``invalid_grant`` afterwards.
* ``GET /_stats``: counters and settings as JSON. ``POST /_reset``: zero the counters.
  ``POST /_config`` with any of ``refresh_delay=SECONDS`` (delay every refresh answer,
  without blocking other requests), ``profiles_total=N`` (default 1,000) and ``rotate=0|1``.

Run: ``python -m bench.upstream [--port N]``; prints ``listening on PORT`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import secrets
import signal
from urllib.parse import parse_qs, urlencode, urlsplit

from bench import http1

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
DEFAULT_PROFILES_TOTAL = 1000
PAGE_CACHE_SIZE = 512
API = b"application/vnd.api+json"


def _profile(pid: str, number: str, phone: str) -> dict[str, object]:
    return {
        "type": "profile",
        "id": pid,
        "attributes": {
            "email": f"customer{number}@example.com",
            "phone_number": phone,
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


# One profile's JSON with %-placeholders: a page is a join of formatted copies, no json.dumps per request.
PROFILE_TEMPLATE = json.dumps(_profile("%(pid)s", "%(n)s", "%(phone)s"), separators=(",", ":")).encode()


def profile_json(number: int) -> bytes:
    return PROFILE_TEMPLATE % {
        b"pid": b"01J%023d" % number,
        b"n": b"%d" % number,
        b"phone": b"+1555%07d" % number,
    }


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(b"offset:%d" % offset).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The offset a cursor names; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("malformed cursor") from exc
    prefix, _, number = raw.partition(b":")
    if prefix != b"offset" or not number.isdigit():
        raise ValueError("malformed cursor")
    return int(number)


def api_error(status: int, code: str, title: str) -> bytes:
    body = json.dumps({"errors": [{"status": status, "code": code, "title": title}]}).encode()
    return http1.response(status, body, API)


ACCOUNTS_RESPONSE = http1.response(
    200,
    json.dumps(
        {
            "data": [
                {
                    "type": "account",
                    "id": "BENCH1",
                    "attributes": {"contact_information": {"organization_name": "Bench"}},
                }
            ]
        }
    ).encode(),
    API,
)
UNAUTHORIZED_RESPONSE = api_error(401, "authentication_failed", "Incorrect authentication.")
NOT_FOUND_RESPONSE = api_error(404, "not_found", "Not found.")
INVALID_GRANT_RESPONSE = http1.response(400, b'{"error":"invalid_grant"}')
UNSUPPORTED_RESPONSE = http1.response(400, b'{"error":"unsupported_grant_type"}')
EMPTY_OK = http1.response(200, b"{}")


class State:
    """Counters and settings shared by every connection of the one event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.refresh_delay = 0.0
        self.profiles_total = DEFAULT_PROFILES_TOTAL
        self.rotate = False
        self.revoked: set[str] = set()  # refresh tokens replaced by rotation or revoked
        self.pages: dict[tuple[bytes, int, int, bool], bytes] = {}
        self.reset()

    def reset(self) -> None:
        self.refresh_requests = 0
        self.refresh_rejected = 0
        self.api_requests = 0
        self.other_requests = 0
        self.connections = 0

    def configure(self, query: dict[str, list[str]]) -> None:
        if "refresh_delay" in query:
            self.refresh_delay = max(0.0, float(query["refresh_delay"][0]))
        if "profiles_total" in query:
            self.profiles_total = max(0, int(query["profiles_total"][0]))
            self.pages.clear()
        if "rotate" in query:
            self.rotate = query["rotate"][0].lower() in ("1", "true", "on", "yes")

    def stats(self) -> bytes:
        body = {
            "refresh_requests": self.refresh_requests,
            "refresh_rejected": self.refresh_rejected,
            "api_requests": self.api_requests,
            "other_requests": self.other_requests,
            "connections": self.connections,
            "refresh_delay": self.refresh_delay,
            "profiles_total": self.profiles_total,
            "rotate": self.rotate,
        }
        return http1.response(200, json.dumps(body).encode())

    def profiles(self, host: bytes, query: str) -> bytes:
        params = parse_qs(query)
        sized = "page[size]" in params
        try:
            size = int(params["page[size]"][0]) if sized else DEFAULT_PAGE_SIZE
            offset = decode_cursor(params["page[cursor]"][0]) if "page[cursor]" in params else 0
        except ValueError:
            return api_error(400, "invalid", "Invalid page[size] or page[cursor].")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return api_error(400, "invalid", f"page[size] must be between 1 and {MAX_PAGE_SIZE}.")
        key = (host, offset, size, sized)
        page = self.pages.get(key)
        if page is None:
            if len(self.pages) >= PAGE_CACHE_SIZE:
                self.pages.clear()
            page = self.pages[key] = self.build_page(host.decode() or f"127.0.0.1:{self.port}", offset, size, sized)
        return page

    def build_page(self, host: str, offset: int, size: int, sized: bool) -> bytes:
        stop = min(self.profiles_total, offset + size)
        base = f"http://{host}/api/profiles"

        def link(page_offset: int) -> str:
            params = {"page[cursor]": encode_cursor(page_offset)} if page_offset else {}
            if sized:
                params["page[size]"] = str(size)
            return f"{base}?{urlencode(params)}" if params else base

        links = {"self": link(offset), "next": link(stop) if stop < self.profiles_total else None, "prev": None}
        if offset:
            links["prev"] = link(max(0, offset - size))
        data = b",".join(profile_json(n) for n in range(offset, stop))
        body = b'{"data":[%s],"links":%s}' % (data, json.dumps(links, separators=(",", ":")).encode())
        return http1.response(200, body, API)

    def token(self, body: bytes) -> bytes:
        self.refresh_requests += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return UNSUPPORTED_RESPONSE
        refresh_token = form.get("refresh_token", "")
        if not refresh_token.startswith("rt-") or refresh_token in self.revoked:
            self.refresh_rejected += 1
            return INVALID_GRANT_RESPONSE
        if self.rotate:
            self.revoked.add(refresh_token)
            refresh_token = "rt-" + secrets.token_urlsafe(48)
        grant = {
            # Klaviyo's access tokens are JWTs of about 500 characters.
            "access_token": "at-" + secrets.token_urlsafe(375),
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": refresh_token,
            "scope": "accounts:read profiles:read",
        }
        return http1.response(200, json.dumps(grant).encode())

    def revoke(self, body: bytes) -> bytes:
        self.other_requests += 1
        token = parse_qs(body.decode()).get("token", [""])[0]
        if token.startswith("rt-"):
            self.revoked.add(token)
        return EMPTY_OK


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
            try:
                parsed = http1.parse(self.buffer)
            except ValueError:
                self.transport.close()  # type: ignore[union-attr]
                return
            if parsed is None:
                return
            message, used = parsed
            self.buffer = self.buffer[used:]
            self.handle(message)

    def handle(self, message: http1.Message) -> None:
        state = self.state
        method, target, _ = message.start
        path, _, query = target.partition(b"?")
        close = message.close
        if method == b"GET" and path in (b"/api/profiles", b"/api/accounts"):
            state.api_requests += 1
            if not message.headers.get(b"authorization", b"").startswith(b"Bearer at-"):
                self.send(UNAUTHORIZED_RESPONSE, close)
            elif path == b"/api/accounts":
                self.send(ACCOUNTS_RESPONSE, close)
            else:
                self.send(state.profiles(message.headers.get(b"host", b""), query.decode()), close)
        elif method == b"POST" and path == b"/oauth/token":
            answer = state.token(message.body)
            if state.refresh_delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(state.refresh_delay, self.send_delayed, answer, close)
            else:
                self.send(answer, close)
        elif method == b"POST" and path == b"/oauth/revoke":
            self.send(state.revoke(message.body), close)
        elif path == b"/_stats":
            self.send(state.stats(), close)
        elif method == b"POST" and path == b"/_reset":
            state.reset()
            self.send(state.stats(), close)
        elif method == b"POST" and path == b"/_config":
            state.configure(parse_qs(urlsplit(target.decode()).query))
            self.send(state.stats(), close)
        else:
            state.other_requests += 1
            self.send(NOT_FOUND_RESPONSE, close)

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
    loop = asyncio.get_running_loop()
    state = State(port)
    server = await loop.create_server(lambda: HttpProtocol(state), "127.0.0.1", port, backlog=1024, reuse_address=True)
    state.port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on {state.port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0")))
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
