"""What the IMAP and POP3 requirement tests share: sessions, delivery over SMTP, raw I/O.

No tests here. Everything goes over the wire: mail gets into a mailbox by SMTP to the target's
``smtp`` endpoint (which works against any target), or by IMAP APPEND; IMAP sessions use
imapclient, or :class:`RawImap` where the exact bytes matter (imapclient's ``idle_check``
can fail on partial lines, so IDLE is tested raw).
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from imapclient import IMAPClient

from conformance.requirements import not_applicable, requirement
from conformance.smtp_client import CLIENT_NAME, SMTPClient
from conformance.target import Account, Target


def token() -> str:
    """A marker to find one test's message among everything in a mailbox."""
    return f"mailspec-{secrets.token_hex(6)}"


def message(
    tok: str,
    *,
    to: str = "alice@example.test",
    subject: str = "conformance",
    body: bytes = b"A conformance test message.\r\n",
    headers: bytes = b"",
) -> bytes:
    """An RFC 5322 message whose Subject and Message-ID carry ``tok``."""
    return (
        f"From: Conformance <conformance@{CLIENT_NAME}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject} {tok}\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"Message-ID: <{tok}@{CLIENT_NAME}>\r\n".encode()
        + headers
        + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + body
    )


MULTIPART = (
    b"From: Conformance <conformance@example.net>\r\n"
    b"To: <alice@example.test>\r\n"
    b"Subject: multipart TOKEN\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <TOKEN@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"First part.\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream; name=blob.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=blob.bin\r\n"
    b"\r\n"
    b"AAECAwRoZWxsbw==\r\n"
    b"--b1--\r\n"
)


def multipart(tok: str) -> bytes:
    return MULTIPART.replace(b"TOKEN", tok.encode())


# -- SMTP delivery -----------------------------------------------------------------------------


def deliver(target: Target, rcpt: str, data: bytes) -> None:
    """Hand ``data`` to the target's inbound SMTP endpoint for ``rcpt`` (250 expected)."""
    ep = target.endpoint("smtp")
    tls = target.ssl_context() if ep.implicit_tls else None
    client = SMTPClient.connect(
        ep.host,
        ep.port,
        timeout=target.timeout,
        tls=tls,
        server_hostname=target.server_name(ep),
        name="smtp",
    )
    try:
        client.ehlo().expect(250, doing="EHLO")
        client.mail(f"conformance@{CLIENT_NAME}").expect(250, doing="MAIL FROM")
        client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}>")
        client.data(data).expect(250, doing="DATA")
        client.quit()
    finally:
        client.close()


# -- IMAP --------------------------------------------------------------------------------------


def mail_role(target: Target, protocol: str) -> str:
    """``imaps`` (``pop3s``) where the target has it, else ``imap`` (``pop3``) with STARTTLS
    (STLS): a requirement that does not concern the kind of TLS runs either way."""
    implicit = f"{protocol}s"
    if implicit in target.endpoints or protocol not in target.endpoints:
        return implicit
    return protocol


def imap_connect(target: Target, role: str | None = None) -> IMAPClient:
    """An IMAP connection (implicit TLS for imaps; STARTTLS done for imap), not logged in."""
    role = role or mail_role(target, "imap")
    ep = target.endpoint(role)
    context = target.ssl_context()
    if ep.implicit_tls:
        client = IMAPClient(
            ep.host, port=ep.port, ssl=True, ssl_context=_named(context, target, role),
            timeout=target.timeout,
        )  # fmt: skip
    else:
        client = IMAPClient(ep.host, port=ep.port, ssl=False, timeout=target.timeout)
        client.starttls(_named(context, target, role))
    # imaplib writes a literal and its CRLF separately: without this, Nagle's algorithm and
    # the server's delayed ACK hold every APPEND for ~40 ms.
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def _named(context: ssl.SSLContext, target: Target, role: str) -> ssl.SSLContext:
    # imapclient verifies against the host it connected to; endpoints given as IP addresses
    # need the configured name, which a wrapper context supplies.
    name = target.server_name(target.endpoint(role))
    if name == target.endpoint(role).host:
        return context
    wrapped = ssl.create_default_context()
    wrapped.check_hostname = False
    wrapped.verify_mode = context.verify_mode
    if target.tls.cafile:
        wrapped.load_verify_locations(str(target.tls.cafile))
    return wrapped


@contextlib.contextmanager
def imap(
    target: Target, account: Account | None = None, role: str | None = None
) -> Iterator[IMAPClient]:
    """A logged-in IMAP session (``target.account`` unless told), logged out afterwards."""
    acc = account or target.account
    client = imap_connect(target, role)
    try:
        client.login(acc.address, acc.password)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.logout()
        with contextlib.suppress(Exception):
            client.shutdown()


@contextlib.contextmanager
def scratch_folder(client: IMAPClient) -> Iterator[str]:
    """A new folder for one test (deleted afterwards), so tests never share messages."""
    name = f"conformance-{secrets.token_hex(4)}"
    client.create_folder(name)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            if client.folder_exists(name):
                with contextlib.suppress(Exception):
                    client.unselect_folder()
                client.delete_folder(name)


def wait_for(client: IMAPClient, folder: str, tok: str, timeout: float = 10.0) -> int:
    """The UID of the message carrying ``tok`` in ``folder`` once it has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        client.select_folder(folder, readonly=True)
        found = client.search(["HEADER", "Message-ID", tok])
        if found:
            return int(found[-1])
        if time.monotonic() > deadline:
            raise AssertionError(f"no message with {tok} reached {folder} in {timeout}s")
        time.sleep(0.03)


def append(client: IMAPClient, folder: str, data: bytes, flags: tuple[bytes, ...] = ()) -> int:
    """APPEND and return the new UID (from APPENDUID when offered, else by searching)."""
    response = client.append(folder, data, flags=flags)
    text = response.decode() if isinstance(response, bytes) else str(response)
    if "[APPENDUID " in text.upper():
        return int(text.upper().split("[APPENDUID ", 1)[1].split("]")[0].split()[1])
    client.select_folder(folder, readonly=True)
    return int(client.search(["ALL"])[-1])


# How a TLS handshake ends when the server hangs up instead (the safe answer to plaintext
# pipelined behind STARTTLS or STLS: nothing injected can run).
TLS_ABORTED = (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)


def require_capability(client: IMAPClient, capability: str) -> None:
    if not client.has_capability(capability):
        not_applicable(f"the server does not advertise {capability}")


class RawImap:
    """A line-level IMAP client over TLS: exact bytes, literals, IDLE."""

    def __init__(self, target: Target, role: str | None = None, source: str | None = None) -> None:
        ep = target.endpoint(role or mail_role(target, "imap"))
        self.timeout = target.timeout
        sock = socket.create_connection(
            (ep.host, ep.port),
            timeout=target.timeout,
            source_address=(source, 0) if source else None,  # a client address of its own
        )
        context = target.ssl_context()
        name = target.server_name(ep)
        if ep.implicit_tls:
            sock = context.wrap_socket(sock, server_hostname=name)
        self.sock = sock
        self.buffer = b""
        self.greeting = self.line()
        if not ep.implicit_tls:
            self.send(b"s0 STARTTLS\r\n")
            self.until(b"s0")
            self.sock = context.wrap_socket(self.sock, server_hostname=name)
        self.counter = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def has_data(self) -> bool:
        """Whether bytes already read (by us or by TLS) wait to be taken."""
        pending = getattr(self.sock, "pending", None)
        return bool(self.buffer) or (pending is not None and pending() > 0)

    def line(self, timeout: float | None = None) -> bytes:
        self.sock.settimeout(timeout or self.timeout)
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; partial data {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def until(self, tag: bytes) -> list[bytes]:
        """Every line up to and including the tagged reply (literals read whole).

        A server may answer with an untagged BYE and close instead (RFC 3501 7.1.5, RFC 9051
        7.1.5): the lines then end with the BYE, which :func:`tagged` reads as ``BYE ...``.
        """
        lines: list[bytes] = []
        while True:
            try:
                line = self.line()
            except ConnectionError:
                if lines and lines[-1].startswith(b"* BYE"):
                    return lines
                raise
            while line.endswith(b"}\r\n") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
                while len(self.buffer) < size:
                    self.sock.settimeout(self.timeout)
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("connection closed inside a literal")
                    self.buffer += chunk
                line += self.buffer[:size]
                self.buffer = self.buffer[size:]
                line += self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, text: str | bytes) -> list[bytes]:
        self.counter += 1
        tag = b"r%d" % self.counter
        data = text.encode() if isinstance(text, str) else text
        self.send(tag + b" " + data + b"\r\n")
        return self.until(tag)

    def login(self, account: Account) -> None:
        lines = self.command(b"LOGIN " + quote(account.address) + b" " + quote(account.password))
        assert b" OK" in lines[-1], lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def quote(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def tagged(lines: list[bytes]) -> bytes:
    """The tagged status (``OK ...``, ``NO ...``, ``BAD ...``) of a raw command, or
    ``BYE ...`` where the server said BYE and closed the connection instead."""
    return lines[-1].split(b" ", 1)[1]


# -- POP3 --------------------------------------------------------------------------------------


def pop3(target: Target, role: str | None = None, source: str | None = None) -> poplib.POP3:
    """A POP3 connection past TLS (STLS for pop3), not logged in; from the local address
    ``source`` when given."""
    ep = target.endpoint(role or mail_role(target, "pop3"))
    context = target.ssl_context()
    bind = (source, 0) if source else None

    class FromSource(poplib.POP3):
        def _create_socket(self, timeout: float) -> socket.socket:
            return socket.create_connection((self.host, self.port), timeout, bind)

    class FromSourceTls(poplib.POP3_SSL):
        def _create_socket(self, timeout: float) -> socket.socket:
            sock = socket.create_connection((self.host, self.port), timeout, bind)
            return context.wrap_socket(sock, server_hostname=self.host)

    if ep.implicit_tls:
        return FromSourceTls(ep.host, ep.port, context=context, timeout=target.timeout)
    client = FromSource(ep.host, ep.port, timeout=target.timeout)
    client.stls(context)
    return client


@contextlib.contextmanager
def pop3_session(target: Target, account: Account | None = None) -> Iterator[poplib.POP3]:
    """A POP3 session logged in with USER/PASS; closed (without QUIT) if the test did not."""
    acc = account or target.mailbox_account
    client = pop3(target)
    try:
        client.user(acc.address)
        client.pass_(acc.password)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()


def pop3_find(client: poplib.POP3, tok: str) -> int | None:
    """The number of the message carrying ``tok`` in this POP3 session, if any."""
    count = client.stat()[0]
    for n in range(count, 0, -1):
        head = b"\r\n".join(client.top(n, 0)[1])
        if tok.encode() in head:
            return n
    return None


def pop3_deliver(
    target: Target, tok: str, data: bytes | None = None, timeout: float = 10.0
) -> None:
    """Deliver a message to the POP3 test account and wait until a session can see it."""
    acc = target.mailbox_account
    deliver(target, acc.address, data or message(tok, to=acc.address))
    deadline = time.monotonic() + timeout
    while True:
        with pop3_session(target) as client:
            found = pop3_find(client, tok)
            client.quit()
        if found is not None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no message with {tok} reached {acc.address} in {timeout}s")
        time.sleep(0.03)


T = TypeVar("T", bound=Callable[..., None])


def both_revisions(clause: str, level: str, title: str) -> Callable[[T], T]:
    """The same requirement at the same clause of RFC 3501 and of RFC 9051: the test runs
    where either revision is advertised, and each requirement is reported not applicable
    where its own revision is not (conformance.plugin)."""

    def mark(test: T) -> T:
        rev2 = requirement("RFC9051", clause, level, title)(test)
        return requirement("RFC3501", clause, level, title)(rev2)

    return mark


__all__ = [
    "TLS_ABORTED",
    "RawImap",
    "append",
    "both_revisions",
    "deliver",
    "imap",
    "imap_connect",
    "imaplib",
    "mail_role",
    "message",
    "multipart",
    "pop3",
    "pop3_deliver",
    "pop3_find",
    "pop3_session",
    "require_capability",
    "scratch_folder",
    "tagged",
    "token",
    "wait_for",
]
