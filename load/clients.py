"""Blocking clients for the load users (gevent makes them cooperative) and the watchers.

SMTP is the standard library's smtplib; IMAP is a small line client of our own, because
IDLE must be driven by hand (imapclient's idle_check can fail on partial lines, see
LIBRARIES.md) and imaplib has no IDLE before Python 3.14. The watchers find arrivals: new
files in the recipients' Maildir ``new/`` directories, and the JSON records the fake MXs
write for each delivery.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from email.utils import formatdate
from pathlib import Path

from load.ledger import Ledger, message_id, read_head
from load.stack import loopback_only

__all__ = [
    "ImapClient",
    "ImapError",
    "MaildirWatcher",
    "MxWatcher",
    "build_message",
    "proxy_header",
    "smtp_connect",
]


def build_message(sender: str, rcpts: list[str], size: int = 1024) -> tuple[str, bytes]:
    """A plain message with a unique Message-ID, about ``size`` bytes."""
    msgid = f"<{uuid.uuid4().hex}@load.mailspec.test>"
    head = (
        f"From: <{sender}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
        f"Subject: load {msgid[1:9]}\r\nDate: {formatdate()}\r\nMessage-ID: {msgid}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return msgid, (head + body).encode("ascii")


def proxy_header(source: str, dest: tuple[str, int], sport: int) -> bytes:
    """A PROXY protocol v1 line claiming the connection comes from ``source``."""
    family = "TCP6" if ":" in source else "TCP4"
    return f"PROXY {family} {source} {dest[0]} {sport} {dest[1]}\r\n".encode()


class _ProxySMTP(smtplib.SMTP):
    """smtplib.SMTP that sends a PROXY v1 header before reading the greeting."""

    proxy_source = ""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        sport = sock.getsockname()[1]
        sock.sendall(proxy_header(self.proxy_source, (host, port), sport))
        return sock  # type: ignore[no-any-return]


def smtp_connect(
    host: str,
    port: int,
    *,
    source: str | None = None,
    proxy_source: str | None = None,
    helo: str = "mta.load.test",
    timeout: float = 10.0,
    starttls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> smtplib.SMTP:
    """An SMTP session, greeted; from ``source`` (a local address) or, through the PROXY
    protocol, claiming ``proxy_source``; optionally with STARTTLS and AUTH."""
    host = loopback_only(host)
    if proxy_source:
        cls = type("ProxySMTP", (_ProxySMTP,), {"proxy_source": proxy_source})
        smtp: smtplib.SMTP = cls(host, port, timeout=timeout)
    else:
        smtp = smtplib.SMTP(
            host, port, timeout=timeout, source_address=(source, 0) if source else None
        )
    try:
        smtp.ehlo(helo)
        if starttls is not None:
            smtp.starttls(context=starttls)
            smtp.ehlo(helo)
        if login is not None:
            smtp.login(*login)
    except BaseException:
        smtp.close()
        raise
    return smtp


# -- IMAP


class ImapError(Exception):
    pass


_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_EXISTS = re.compile(rb"\* (\d+) EXISTS\r?\n$")


class ImapClient:
    """Tagged commands, literals and IDLE over one TLS connection (IMAPS)."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, timeout: float = 10.0) -> None:
        host = loopback_only(host)
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        # Our own buffer: a socket file object is unusable after one read timed out.
        self._buf = bytearray()
        self.timeout = timeout
        # Each EXISTS the server sent, in any response (IDLE's, or untagged in a command's
        # reply): (the message count it announced, when it was read, time.time()).
        self.exists: list[tuple[int, float]] = []
        self._tag = 0
        greeting = self._line()
        if not greeting.startswith(b"* OK"):
            self.close()
            raise ImapError(f"greeting: {greeting!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ImapError("connection closed")
        self._buf += chunk
        if len(self._buf) > 16 << 20:
            raise ImapError("response too long")

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\n")) < 0:
            self._fill()
        line = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        return line

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _response(self) -> bytes:
        """One response line with its literals inlined (an EXISTS noted with its time)."""
        line = self._line()
        while m := _LITERAL.search(line):
            line += self._read(int(m.group(1)))
            line += self._line()
        if m := _EXISTS.match(line):
            self.exists.append((int(m.group(1)), time.time()))
        return line

    @property
    def count(self) -> int:
        """The message count the server last announced (0 before any EXISTS)."""
        return self.exists[-1][0] if self.exists else 0

    def heard(self, seq: int) -> float | None:
        """When the client first heard of message ``seq``: the first EXISTS covering it."""
        return next((when for n, when in self.exists if n >= seq), None)

    def forget(self, seq: int) -> None:
        """Keep only the EXISTS that announce messages after ``seq`` (and the last one)."""
        self.exists = [e for e in self.exists[:-1] if e[0] > seq] + self.exists[-1:]

    def command(self, text: str) -> list[bytes]:
        """Send one command; its untagged responses. Raises unless the tagged reply is OK."""
        self._tag += 1
        tag = f"L{self._tag}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        untagged: list[bytes] = []
        while True:
            line = self._response()
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise ImapError(f"{text.split()[0]}: {line!r}")
                return untagged
            untagged.append(line)

    def idle(self, wait: float) -> list[bytes]:
        """IDLE until something arrives or ``wait`` seconds pass; what the server said."""
        self._tag += 1
        tag = f"L{self._tag}".encode()
        self.sock.sendall(tag + b" IDLE\r\n")
        if not self._line().startswith(b"+"):
            raise ImapError("IDLE refused")
        seen: list[bytes] = []
        self.sock.settimeout(wait)
        try:
            # When the news came is noted as it is read: DONE and its reply are not part of it.
            seen.append(self._response())
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(self.timeout)
        self.sock.sendall(b"DONE\r\n")
        while True:
            line = self._response()
            if line.startswith(tag + b" "):
                return seen
            seen.append(line)


# -- watchers


class MaildirWatcher:
    """New files in the recipients' INBOX ``new/``: the arrival, timed by the rename.

    A Maildir delivery renames the file from ``tmp/`` into ``new/``; the rename sets the
    file's ctime, which is the moment it arrived (the kernel's clock, the same wall clock
    the clients read). A directory is listed again only when its mtime moved.
    """

    def __init__(
        self,
        mail_dir: Path,
        addresses: Iterable[str],
        ledger: Ledger,
        lag: float = 0.0,
        who: Callable[[int], str | None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.lag = lag  # see ledger.ctime_lag
        self.who = who  # the node a process id belongs to (the writer's pid is in the name)
        self.dirs = []
        for addr in addresses:
            local, _, domain = addr.lower().rpartition("@")
            self.dirs.append(mail_dir / domain / local / "new")
        self._mtimes: dict[Path, int] = {}
        self._seen: set[str] = set()

    def scan(self) -> int:
        found = 0
        for d in self.dirs:
            try:
                mtime = d.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if self._mtimes.get(d) == mtime and not _recent(mtime):
                continue
            self._mtimes[d] = mtime
            with os.scandir(d) as it:
                names = [e.name for e in it if e.name not in self._seen]
            for name in names:
                self._seen.add(name)
                path = d / name
                try:
                    when = path.stat().st_ctime + self.lag
                    head = read_head(path)
                except FileNotFoundError:
                    # Flagged by a reader meanwhile: now in cur/ with info letters.
                    moved = next(iter(d.parent.joinpath("cur").glob(f"{name}:2,*")), None)
                    if moved is None:
                        continue
                    when, head = time.time(), read_head(moved)
                self.ledger.arrive(message_id(head), when, by=self._writer(name))
                found += 1
        return found

    def _writer(self, name: str) -> str | None:
        m = _WRITER.search(name)
        return self.who(int(m.group(1))) if m and self.who is not None else None


# The writer's process id in a Maildir base name (reference.mailbox.maildir.FileNames).
_WRITER = re.compile(r"\.M\d+P(\d+)Q")


class MxWatcher:
    """The fake MXs' delivery records (``NAME-ID.json``, written by `mailspec cluster`)."""

    def __init__(self, directory: Path, ledger: Ledger) -> None:
        self.dir = directory
        self.ledger = ledger
        self._mtime = 0
        self._seen: set[str] = set()

    def scan(self) -> int:
        try:
            mtime = self.dir.stat().st_mtime_ns
        except FileNotFoundError:
            return 0
        if mtime == self._mtime and not _recent(mtime):
            return 0
        self._mtime = mtime
        found = 0
        with os.scandir(self.dir) as it:
            names = [e.name for e in it if e.name.endswith(".json") and e.name not in self._seen]
        for name in names:
            self._seen.add(name)
            try:
                rec = json.loads((self.dir / name).read_text())
            except (OSError, ValueError):
                self._seen.discard(name)
                continue
            rcpts = rec.get("rcpt_tos") or []
            msgid = rec.get("message_id") or None
            self.ledger.remote_delivery(str(rec.get("mail_from", "")), msgid, rcpts)
            self.ledger.arrive(msgid, float(rec["time"]), len(rcpts))
            found += 1
        return found


def _recent(mtime_ns: int) -> bool:
    """Directory mtimes tick with the kernel's coarse clock: a file added in the same tick
    as the last listing leaves the mtime unchanged, so a young mtime is listed again."""
    return time.time() - mtime_ns / 1e9 < 1.0
