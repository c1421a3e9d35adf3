"""What every server of the integration does the same way, whichever it is (gunicorn, granian).

* **Metrics over several worker processes**: ``prometheus_client`` adds up the workers'
  counters through files in one directory, named by ``PROMETHEUS_MULTIPROC_DIR`` before the
  workers start. ``metrics_directory`` picks it: the one the environment names (made with
  mode 0700 when missing; one that another user owns or may write to is refused, since they
  could plant symlinks named like the workers' files), or a new private one
  (``tempfile.mkdtemp``), never one someone could have made beforehand under a name they
  could predict. ``clear_metrics`` removes the metric files (only those) at start and stop.
* **Access lines**: ``escaped`` writes each control character, non-ASCII character, quote
  and backslash a client sent as ``\\xNN`` (as nginx does), so no request can start a line
  or a field of its own.
* **A taken address**: ``refuse_taken_address`` stops a server whose workers would listen
  with SO_REUSEPORT on an address another server already listens on (they would share it
  silently).

Each raises RuntimeError with the reason; nothing here imports a server.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import stat
import tempfile

# Everything but printable ASCII, and the quote and backslash that delimit the line's fields.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _code(found: re.Match[str]) -> str:
    character = ord(found.group())
    return f"\\x{character:02x}" if character < 0x100 else f"\\u{character:04x}"


def escaped(value: str) -> str:
    """``value`` with each control character, non-ASCII character, quote and backslash written
    as ``\\xNN``. WSGI strings hold one byte per character (latin-1), so ``\\xNN`` are the
    bytes received."""
    return _UNSAFE.sub(_code, value) if _UNSAFE.search(value) else value


def check_named_metrics_dir(path: str) -> None:
    """Make ``path`` (mode 0700) if it does not exist; refuse one another user owns or may write to."""
    if not os.path.exists(path):
        os.makedirs(path, mode=0o700)
    found = os.stat(path)
    if not stat.S_ISDIR(found.st_mode):
        raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR {path} is not a directory")
    if found.st_uid != os.geteuid():
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR {path} belongs to uid {found.st_uid}, not to this user "
            f"(uid {os.geteuid()}): use a directory of this user's, writable only by it"
        )
    if found.st_mode & 0o022:
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR {path} may be written by other users "
            f"(mode {stat.S_IMODE(found.st_mode):04o}): chmod go-w it, or use another directory"
        )


def metrics_directory() -> tuple[str, bool]:
    """The metrics directory for a server about to start its workers, and whether it made it
    itself (then it removes it when it stops); set in ``PROMETHEUS_MULTIPROC_DIR``, with any
    metric files a previous server left removed."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if named:
        check_named_metrics_dir(named)
        directory, made_here = named, False
    else:
        directory, made_here = tempfile.mkdtemp(prefix="klaviyo-metrics-"), True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # the workers inherit it
    clear_metrics(directory)
    return directory, made_here


def clear_metrics(directory: str) -> None:
    # Only prometheus_client's own files: the directory may be one the operator named.
    if not directory:
        return
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def refuse_taken_address(host: str, port: int) -> None:
    """Raise RuntimeError when another server already listens on ``host:port``."""
    if not port:
        raise RuntimeError("a fixed port is needed here (host:port, not port 0)")
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
