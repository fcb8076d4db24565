"""A small ManageSieve client (RFC 5804) for the suite: every reply kept as it came."""

from __future__ import annotations

import base64
import re
import socket
import ssl
from dataclasses import dataclass, field

__all__ = ["ManageSieveClient", "SieveReply", "quote"]

_FINAL = re.compile(rb'^(OK|NO|BYE)(?: \(([^)]*)\))?(?: "((?:[^"\\]|\\.)*)"| \{(\d+)\+?\})?')
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


def quote(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def literal(text: str) -> bytes:
    raw = text.encode()
    return b"{%d+}\r\n" % len(raw) + raw


@dataclass
class SieveReply:
    """One response: its status, response code, text, and the lines (and literals) before."""

    status: str
    code: str = ""
    text: str = ""
    lines: list[bytes] = field(default_factory=list)
    literals: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def __str__(self) -> str:
        code = f" ({self.code})" if self.code else ""
        return f"{self.status}{code} {self.text!r}"


class ManageSieveClient:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock: socket.socket = sock
        self.timeout = timeout
        self._buf = b""
        self.greeting = self.read()

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 10.0) -> ManageSieveClient:
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read(self) -> SieveReply:
        """Lines up to the final OK, NO or BYE."""
        lines: list[bytes] = []
        literals: list[bytes] = []
        while True:
            line = self._line()
            m = _FINAL.match(line)
            if m:
                text = m.group(3)
                if m.group(4):
                    text = self._exactly(int(m.group(4)))
                    self._line()
                decoded = re.sub(rb"\\(.)", rb"\1", text or b"").decode("utf-8", "replace")
                code = (m.group(2) or b"").decode()
                return SieveReply(m.group(1).decode(), code, decoded, lines, literals)
            lit = _LITERAL.search(line)
            if lit:
                literals.append(self._exactly(int(lit.group(1))))
                continue
            lines.append(line)

    def command(self, *parts: bytes) -> SieveReply:
        self.sock.sendall(b" ".join(parts) + b"\r\n")
        return self.read()

    def capabilities(self, reply: SieveReply | None = None) -> dict[str, str]:
        caps: dict[str, str] = {}
        for line in (reply or self.greeting).lines:
            items = re.findall(rb'"((?:[^"\\]|\\.)*)"', line)
            if items:
                caps[items[0].decode().upper()] = items[1].decode() if len(items) > 1 else ""
        return caps

    def starttls(self, context: ssl.SSLContext, server_name: str) -> tuple[SieveReply, SieveReply]:
        """STARTTLS; on OK the handshake, and the capabilities the server sends after it."""
        reply = self.command(b"STARTTLS")
        if not reply.ok:
            return reply, reply
        self.sock = context.wrap_socket(self.sock, server_hostname=server_name)
        self._buf = b""
        return reply, self.read()

    def authenticate(self, user: str, password: str) -> SieveReply:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.command(b"AUTHENTICATE", quote("PLAIN"), quote(token))

    def putscript(self, name: str, text: str) -> SieveReply:
        return self.command(b"PUTSCRIPT", quote(name), literal(text))

    def checkscript(self, text: str) -> SieveReply:
        return self.command(b"CHECKSCRIPT", literal(text))

    def listscripts(self) -> tuple[SieveReply, dict[str, bool]]:
        reply = self.command(b"LISTSCRIPTS")
        scripts: dict[str, bool] = {}
        for line in reply.lines:
            m = re.match(rb'"((?:[^"\\]|\\.)*)"( ACTIVE)?', line)
            if m:
                scripts[m.group(1).decode()] = bool(m.group(2))
        for raw in reply.literals:  # a name sent as a literal
            scripts[raw.decode()] = False
        return reply, scripts
