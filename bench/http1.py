"""The one HTTP/1.1 message parser and request builder of the bench (fake upstream and load generator).

Sans-IO: ``parse`` takes the bytes received so far and returns the first complete message
with the number of bytes it used, or ``None`` when more are needed. It understands what
the bench's servers and clients send: a start line, headers, and a body framed by
``Content-Length`` or ``Transfer-Encoding: chunked`` (no trailers). Anything else is a
``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}


@dataclass(frozen=True, slots=True)
class Message:
    """A request (``start`` = method, target, version) or a response (version, status, reason)."""

    start: tuple[bytes, bytes, bytes]
    headers: dict[bytes, bytes]  # lower-case names; a repeated header keeps its last value
    body: bytes

    @property
    def close(self) -> bool:
        return self.headers.get(b"connection", b"").lower() == b"close"

    @property
    def status(self) -> int:
        return int(self.start[1])


def parse(buffer: bytes) -> tuple[Message, int] | None:
    """The first complete message in ``buffer`` and how many bytes it took, or None if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ValueError("message head too large")
        return None
    lines = buffer[:end].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2:
        raise ValueError("malformed start line")
    start = (parts[0], parts[1], parts[2] if len(parts) > 2 else b"")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    body_start = end + 4
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return _chunked(buffer, body_start, start, headers)
    length = int(headers.get(b"content-length", b"0"))
    if len(buffer) < body_start + length:
        return None
    return Message(start, headers, bytes(buffer[body_start : body_start + length])), body_start + length


def _chunked(
    buffer: bytes, position: int, start: tuple[bytes, bytes, bytes], headers: dict[bytes, bytes]
) -> tuple[Message, int] | None:
    chunks = []
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(buffer[position:line_end].split(b";", 1)[0], 16)
        data_start = line_end + 2
        if len(buffer) < data_start + size + 2:
            return None
        if size == 0:
            return Message(start, headers, b"".join(chunks)), data_start + 2
        chunks.append(bytes(buffer[data_start : data_start + size]))
        position = data_start + size + 2


def request(
    method: str, host: str, port: int, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A complete HTTP/1.1 request, ready to send."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    """A complete HTTP/1.1 response with a ``Content-Length`` body."""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (status, REASONS[status], content_type, len(body))
        + body
    )
