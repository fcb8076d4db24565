"""A raw SMTP client for conformance tests: exact bytes out, whole replies in, every read timed."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

__all__ = [
    "CLIENT_NAME",
    "EhloResponse",
    "Reply",
    "SMTPClient",
    "SMTPProtocolError",
    "SMTPTimeout",
    "dot_stuff",
    "is_address_literal",
    "is_domain",
    "proxy_v1_header",
]

# The name the suite gives in HELO (which takes a domain, never an address literal).
# ".test" is reserved (RFC 2606), so no real host can be confused with the suite.
CLIENT_NAME = "conformance.mailspec.test"

# A reply line may be 512 octets (RFC 5321 4.5.3.1.5); allow far more, but stay bounded so
# a broken server cannot make the suite buffer without end.
MAX_LINE = 64 * 1024
MAX_REPLY_LINES = 1000
_TRANSCRIPT_LINES = 400

_REPLY_LINE = re.compile(rb"^([0-9]{3})([ -]|$)(.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=\s|$)")
_EHLO_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# Written as \xNN in the transcript: a test that sends a NUL or an ESC must not make its own
# failure report binary to grep, or drive the terminal that shows it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# RFC 5321 4.1.2: Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
_SUB_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*")
# RFC 5321 4.1.3: General-address-literal = Standardized-tag ":" 1*dcontent
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")


def is_domain(text: str) -> bool:
    """Whether ``text`` is an RFC 5321 ``Domain`` (no trailing dot, no underscore)."""
    return bool(_DOMAIN.fullmatch(text))


def is_address_literal(text: str) -> bool:
    """Whether ``text`` is an RFC 5321 4.1.3 address literal such as ``[192.0.2.1]``."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        return True
    parts = inner.split(".")
    if len(parts) == 4 and all(p.isdigit() and 1 <= len(p) <= 3 for p in parts):
        return all(int(p) <= 255 for p in parts)
    return bool(_GENERAL_LITERAL.fullmatch(inner))


class SMTPProtocolError(Exception):
    """The server broke the reply syntax (a conformance failure in itself)."""


class SMTPTimeout(Exception):
    """No complete reply in time; the message says what was awaited."""


@dataclass(frozen=True)
class Reply:
    """One complete (possibly multiline) SMTP reply."""

    code: int
    lines: tuple[str, ...]
    enhanced: str | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def parse(cls, data: bytes) -> Reply:
        """Parse one whole reply from its bytes (each line ending in CRLF)."""
        lines = data.split(b"\r\n")
        if lines[-1] != b"":
            raise SMTPProtocolError(f"reply not terminated by CRLF: {data!r}")
        builder = _ReplyBuilder()
        for i, line in enumerate(lines[:-1]):
            done = builder.feed(line + b"\r\n")
            if done and i != len(lines) - 2:
                raise SMTPProtocolError(f"data after the last line of a reply: {data!r}")
        if not builder.done:
            raise SMTPProtocolError(f"reply ends with a continuation line: {data!r}")
        return builder.reply()

    @property
    def text(self) -> str:
        """The reply text, one line per reply line, without codes."""
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def intermediate(self) -> bool:
        return 300 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        first = f"{self.code} {self.lines[0]}".rstrip() if self.lines else str(self.code)
        more = len(self.lines) - 1
        return f"{first} (+{more} lines)" if more > 0 else first

    def expect(self, *codes: int, doing: str) -> Reply:
        """Return self if the code is one of ``codes``; else fail naming what was being done."""
        if self.code not in codes:
            want = " or ".join(str(c) for c in codes)
            raise AssertionError(f"{doing}: expected {want}, got {self}")
        return self


class _ReplyBuilder:
    """Accumulates the lines of one reply; checks the code repeats (RFC 5321 4.2)."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.lines: list[str] = []
        self.raw = bytearray()
        self.done = False

    def feed(self, line: bytes) -> bool:
        self.raw += line
        if not line.endswith(b"\r\n"):
            raise SMTPProtocolError(f"reply line not terminated by CRLF: {line!r}")
        m = _REPLY_LINE.match(line[:-2])
        if m is None:
            raise SMTPProtocolError(f"not an SMTP reply line: {line!r}")
        code = int(m.group(1))
        if self.code is None:
            self.code = code
        elif code != self.code:
            raise SMTPProtocolError(
                f"multiline reply changes code from {self.code} to {code}: {bytes(self.raw)!r}"
            )
        if len(self.lines) >= MAX_REPLY_LINES:
            raise SMTPProtocolError(f"reply longer than {MAX_REPLY_LINES} lines")
        self.lines.append(m.group(3).decode("utf-8", "replace"))
        self.done = m.group(2) != b"-"
        return self.done

    def reply(self) -> Reply:
        assert self.code is not None and self.done
        m = _ENHANCED.match(self.lines[0])
        return Reply(self.code, tuple(self.lines), m.group(0) if m else None, bytes(self.raw))


@dataclass(frozen=True)
class EhloResponse:
    """A parsed positive EHLO reply: the server's name, greeting text and extensions."""

    domain: str
    greeting: str
    extensions: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, reply: Reply) -> EhloResponse:
        """Split a 250 EHLO reply per RFC 5321 4.1.1.1; raise if a line is not well formed."""
        if reply.code != 250 or not reply.lines:
            raise SMTPProtocolError(f"not a positive EHLO reply: {reply}")
        domain, _, greeting = reply.lines[0].partition(" ")
        extensions: dict[str, tuple[str, ...]] = {}
        for line in reply.lines[1:]:
            keyword, *params = line.split(" ")
            if not _EHLO_KEYWORD.fullmatch(keyword):
                raise SMTPProtocolError(f"EHLO line is not an ehlo-keyword: {line!r}")
            # EHLO keywords are case-insensitive (RFC 5321 4.1.1.1): key them upper case.
            extensions[keyword.upper()] = tuple(params)
        return cls(domain, greeting, extensions)


def dot_stuff(message: bytes) -> bytes:
    """Message bytes as sent after DATA: CRLF lines, leading dots doubled (RFC 5321 4.5.2)."""
    lines = message.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


def proxy_v1_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY protocol v1 line claiming ``source`` as the client's address."""
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    family = "TCP4" if src.version == 4 else "TCP6"
    if src.version != dst.version:
        raise ValueError("PROXY v1 needs both addresses of one family")
    return f"PROXY {family} {src} {dst} {source[1]} {destination[1]}\r\n".encode()


class SMTPClient:
    """A synchronous SMTP client that sends exactly what it is told and keeps a transcript.

    Unlike smtplib it never retries, never pipelines behind the test's back, and lets a
    test send malformed bytes; every read has a timeout so a silent server fails a test
    instead of hanging the suite.
    """

    def __init__(self, sock: socket.socket, *, timeout: float = 10.0, name: str = "smtp") -> None:
        self.sock = sock
        self.timeout = timeout
        self.name = name
        self.greeting: Reply | None = None
        self.ehlo_response: EhloResponse | None = None
        self.tls_active = isinstance(sock, ssl.SSLSocket)
        self.transcript: deque[str] = deque(maxlen=_TRANSCRIPT_LINES)
        self._buffer = bytearray()
        self._eof = False
        self._last_sent = "(connect)"
        sock.settimeout(timeout)

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        read_greeting: bool = True,
        preamble: bytes = b"",
        name: str = "smtp",
    ) -> SMTPClient:
        """Open a connection (wrapped in TLS at once if ``tls``: implicit TLS, port 465).

        ``preamble`` is sent before anything is read (a PROXY header, or a test of a
        client that talks before the greeting); ``read_greeting`` reads the greeting.
        """
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise SMTPTimeout(f"{name}: no connection to {host}:{port} within {timeout}s") from None
        try:
            if preamble:
                sock.sendall(preamble)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        except BaseException:
            sock.close()
            raise
        client = cls(sock, timeout=timeout, name=name)
        if preamble:
            client._note("C", preamble)
        if read_greeting:
            try:
                client.read_greeting()
            except BaseException:
                client.close()
                raise
        return client

    # -- bytes on the wire ------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send ``data`` exactly as given (no CRLF added, no dot-stuffing)."""
        self._note("C", data)
        self._last_sent = data[:60].decode("ascii", "replace").strip() or repr(data[:60])
        self.sock.sendall(data)

    def send_line(self, line: str | bytes) -> None:
        """Send one command line, adding CRLF."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def read_reply(self, timeout: float | None = None) -> Reply:
        """Read one complete reply, however many lines it has."""
        builder = _ReplyBuilder()
        while not builder.done:
            builder.feed(self._read_line(timeout))
        reply = builder.reply()
        return reply

    def read_replies(self, quiet: float = 0.5) -> list[Reply]:
        """Every reply that comes until the server is silent for ``quiet`` s or closes.

        For counting answers: a line that must get exactly one reply, a smuggled second
        transaction that would get five.
        """
        out: list[Reply] = []
        while True:
            if self._eof and not self._buffer:
                return out
            try:
                out.append(self.read_reply(timeout=quiet))
            except SMTPTimeout:
                return out
            except SMTPProtocolError:
                if self._eof and not self._buffer:
                    return out  # closed between replies: what came is the answer
                raise

    @property
    def closed(self) -> bool:
        """Whether the server has closed the connection (as far as reads have seen)."""
        return self._eof and not self._buffer

    def read_greeting(self) -> Reply:
        self.greeting = self.read_reply()
        return self.greeting

    def command(self, line: str | bytes) -> Reply:
        """Send one command line and read its reply."""
        self.send_line(line)
        return self.read_reply()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection within ``timeout`` (data is discarded)."""
        if self._eof:
            return True
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self._eof = True
                    return True
                self._note("S", chunk)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            self._eof = True
            return True
        finally:
            if not self._eof:
                self.sock.settimeout(self.timeout)

    def pending(self, wait: float = 0.2) -> bytes:
        """Bytes the server sent without being asked (waits up to ``wait`` seconds for some)."""
        if not self._buffer and not self._eof:
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self._eof = True
                self._buffer += chunk
            except TimeoutError:
                pass
            finally:
                self.sock.settimeout(self.timeout)
        out = bytes(self._buffer)
        self._buffer.clear()
        if out:
            self._note("S", out)
        return out

    # -- commands -----------------------------------------------------------------------

    def ehlo(self, name: str | None = None) -> Reply:
        """EHLO; a positive reply is parsed into :attr:`ehlo_response`.

        Without a name the client sends its address literal, as RFC 5321 4.1.4 asks of a
        client with no meaningful host name.
        """
        reply = self.command(f"EHLO {name or self.address_literal()}")
        self.ehlo_response = EhloResponse.parse(reply) if reply.code == 250 else None
        return reply

    def helo(self, name: str = CLIENT_NAME) -> Reply:
        return self.command(f"HELO {name}")

    @property
    def extensions(self) -> dict[str, tuple[str, ...]]:
        """Extensions from the last positive EHLO (keywords upper case)."""
        return self.ehlo_response.extensions if self.ehlo_response else {}

    def mail(self, sender: str, params: Iterable[str] = ()) -> Reply:
        return self.command(" ".join([f"MAIL FROM:<{sender}>", *params]))

    def rcpt(self, recipient: str, params: Iterable[str] = ()) -> Reply:
        return self.command(" ".join([f"RCPT TO:<{recipient}>", *params]))

    def data(self, message: bytes) -> Reply:
        """DATA, then the dot-stuffed message; returns the final reply (or DATA's if not 354)."""
        reply = self.command("DATA")
        if reply.code != 354:
            return reply
        self.send(dot_stuff(message) + b".\r\n")
        return self.read_reply()

    def bdat(self, chunk: bytes, *, last: bool = False) -> Reply:
        """BDAT with ``chunk`` sent right behind the command (RFC 3030: no dot-stuffing)."""
        self.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
        return self.read_reply()

    def auth_plain(self, user: str, password: str) -> Reply:
        """AUTH PLAIN with an initial response (RFC 4616, RFC 4954 4)."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.command(f"AUTH PLAIN {token}")

    def rset(self) -> Reply:
        return self.command("RSET")

    def noop(self) -> Reply:
        return self.command("NOOP")

    def quit(self) -> Reply:
        return self.command("QUIT")

    def starttls(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None = None,
        *,
        pipelined: bytes = b"",
    ) -> Reply:
        """STARTTLS and, on 220, the TLS handshake on the same socket (RFC 3207).

        ``pipelined`` is sent in the same write as the command, in plaintext: the
        command-injection probe (CVE-2011-0411), which the server must discard.
        """
        self.send(b"STARTTLS\r\n" + pipelined)
        reply = self.read_reply()
        if reply.code != 220:
            return reply
        if self._buffer:
            # Bytes after the 220 but before the handshake were sent in plaintext and would
            # be read as if protected: the STARTTLS injection flaw (CVE-2011-0411 family).
            raise SMTPProtocolError(
                f"server sent data after its 220 to STARTTLS: {bytes(self._buffer)!r}"
            )
        host = server_hostname or self.sock.getpeername()[0]
        self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.sock.settimeout(self.timeout)
        self.tls_active = True
        # RFC 3207 4.2: the client MUST discard what it knew from the server before TLS.
        self.ehlo_response = None
        self._note("*", b"TLS established\r\n")
        return reply

    def address_literal(self) -> str:
        """This end's address as an RFC 5321 4.1.3 address literal."""
        addr = ipaddress.ip_address(self.sock.getsockname()[0])
        return f"[{addr}]" if addr.version == 4 else f"[IPv6:{addr}]"

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> SMTPClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def transcript_text(self) -> str:
        return "\n".join(self.transcript)

    # -- internals ------------------------------------------------------------------------

    def _note(self, who: str, data: bytes) -> None:
        for line in data.splitlines() or [b""]:
            text = _CONTROL.sub(
                lambda m: f"\\x{ord(m.group()):02x}", line.decode("utf-8", "replace")
            )
            self.transcript.append(f"{who}: {text}")

    def _read_line(self, timeout: float | None) -> bytes:
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while True:
                nl = self._buffer.find(b"\n")
                if nl >= 0:
                    line = bytes(self._buffer[: nl + 1])
                    del self._buffer[: nl + 1]
                    self._note("S", line)
                    return line
                if len(self._buffer) > MAX_LINE:
                    raise SMTPProtocolError(f"reply line longer than {MAX_LINE} bytes")
                if self._eof:
                    raise SMTPProtocolError(
                        f"{self.name}: connection closed while awaiting the reply to "
                        f"{self._last_sent!r}"
                        + (f"; partial reply {bytes(self._buffer)!r}" if self._buffer else "")
                    )
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    wait = timeout if timeout is not None else self.timeout
                    raise SMTPTimeout(
                        f"{self.name}: no reply to {self._last_sent!r} within {wait}s"
                    ) from None
                except (ConnectionResetError, ssl.SSLEOFError):
                    chunk = b""
                if not chunk:
                    self._eof = True
                    continue
                self._buffer += chunk
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)
