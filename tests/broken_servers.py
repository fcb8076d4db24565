"""Small SMTP servers broken on purpose, each in a way the conformance suite must catch.

Each is aiosmtpd (which gets the basics right) with one flaw put back in, the way real
servers had it:

- ``lf-dot-lf``: DATA read line by line on LF with CR stripped, so ``<LF>.<LF>`` ends the
  data and what follows runs as commands (SMTP smuggling, CVE-2023-51764 and relatives);
- ``open-relay``: RCPT takes any address, for anyone;
- ``starttls-injection``: plaintext pipelined behind STARTTLS is kept and run inside TLS
  (CVE-2011-0411);
- ``control-characters``: a NUL or another control character in the EHLO/HELO name or in a
  MAIL/RCPT path is taken as part of it (aiosmtpd's own behaviour, and the reference's
  until it refused them);
- ``mangled-body``: the stored body is not what was sent: 8-bit octets become ``?``, lines
  are cut at 900 octets, and a leading dot is doubled (the stuffing put back).

One variant is not a flaw but a safe reading the suite once took for one:

- ``tls-abort``: plaintext pipelined behind STARTTLS makes the server answer 220 and hang
  up instead of starting TLS (nothing injected runs), as some servers do.

With ``mailbox=True`` the server also serves what it stored over POP3, with implicit TLS
(``pop3s``) or STLS (``pop3``; the ``tls-abort`` variant hangs up there too), to
``alice@``: the way the suite reads delivered mail back.

With ``flaw=None`` the same server is the control: it passes the tests the flaws fail.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from reference.tls import self_signed

__all__ = ["DOMAIN", "FLAWS", "HOSTNAME", "SAFE", "BrokenServer"]

HOSTNAME = "broken.example.test"
DOMAIN = "example.test"
MAILBOXES = {f"{local}@{DOMAIN}" for local in ("postmaster", "alice", "bob")}
FLAWS = ("lf-dot-lf", "open-relay", "starttls-injection", "control-characters", "mangled-body")
SAFE = ("tls-abort",)
ACCOUNT = (f"alice@{DOMAIN}", "alice-password")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Handler:
    def __init__(self, flaw: str | None) -> None:
        self.flaw = flaw
        self.messages: list[bytes] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.flaw != "open-relay":
            domain = address.rpartition("@")[2].lower()
            if domain != DOMAIN:
                return "554 5.7.1 Relay access denied"
            if address.lower() not in MAILBOXES:
                return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if self.flaw == "mangled-body":
            data = _mangle(data)
        self.messages.append(data)
        return "250 2.0.0 OK"


def _mangle(data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = []
    for line in body.split(b"\r\n"):
        line = bytes(b if b < 0x80 else 0x3F for b in line)[:900]
        lines.append(b"." + line if line.startswith(b".") else line)
    return head + sep + b"\r\n".join(lines)


class _POP3:
    """Just enough POP3 (RFC 1939) for the suite to read the stored messages back."""

    def __init__(self, handler: _Handler, tls: ssl.SSLContext) -> None:
        self.handler = handler
        self.tls = tls

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        user = ""
        authed = False
        drop: list[bytes] = []

        def send(text: bytes) -> None:
            writer.write(text + b"\r\n")

        def multi(first: bytes, data: bytes) -> None:
            send(first)
            for line in data.split(b"\r\n"):
                send(b"." + line if line.startswith(b".") else line)
            send(b".")

        send(b"+OK broken POP3")
        try:
            while line := await reader.readline():
                verb, _, arg = line.strip().decode("utf-8", "replace").partition(" ")
                verb = verb.upper()
                if verb == "QUIT":
                    send(b"+OK bye")
                    break
                if verb == "STLS" and self.handler.flaw == "tls-abort" and reader._buffer:
                    send(b"+OK Begin TLS negotiation")
                    break  # hang up rather than start TLS behind queued plaintext
                if verb == "STLS":
                    send(b"+OK Begin TLS negotiation")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    continue
                if verb == "CAPA":
                    multi(b"+OK", b"USER\r\nTOP\r\nUIDL\r\nSTLS")
                elif verb == "USER":
                    user = arg
                    send(b"+OK")
                elif verb == "PASS" and (user, arg) == ACCOUNT:
                    authed, drop = True, list(self.handler.messages)
                    send(b"+OK")
                elif not authed:
                    send(b"-ERR not logged in")
                elif verb == "STAT":
                    send(b"+OK %d %d" % (len(drop), sum(map(len, drop))))
                elif verb in ("RETR", "TOP") and arg.split()[0].isdigit():
                    n = int(arg.split()[0])
                    if not 1 <= n <= len(drop):
                        send(b"-ERR no such message")
                        continue
                    msg = drop[n - 1].removesuffix(b"\r\n")
                    if verb == "TOP":
                        msg = msg.partition(b"\r\n\r\n")[0] + b"\r\n"
                    multi(b"+OK", msg)
                else:
                    send(b"-ERR unknown command")
                await writer.drain()
        finally:
            writer.close()


class _SMTP(SMTP):
    def __init__(self, handler: _Handler, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.flaw = handler.flaw

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrading = self._original_transport is not None and self.transport is not None
        saved = bytes(self._reader._buffer) if upgrading else b""
        super().connection_made(transport)
        if upgrading and saved and self.flaw == "starttls-injection":
            # The flaw: what came in plaintext behind STARTTLS is read as if through TLS.
            self._reader._buffer.extend(saved)

    async def _refuse_controls(self, arg: str | None, reply: str) -> bool:
        if self.flaw == "control-characters" or not _CONTROL.search(arg or ""):
            return False
        await self.push(reply)
        return True

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.flaw == "tls-abort" and not arg and self._reader._buffer:
            await self.push("220 2.0.0 Ready to start TLS")
            assert self.transport is not None
            self.transport.close()  # the 220 goes out, then the connection ends
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_EHLO(self, arg: str) -> None:
        if not await self._refuse_controls(arg, "501 5.5.4 Control character in the name"):
            await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str) -> None:
        if not await self._refuse_controls(arg, "501 5.5.4 Control character in the name"):
            await super().smtp_HELO(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        if not await self._refuse_controls(arg, "553 5.1.7 Control character in the address"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        if not await self._refuse_controls(arg, "553 5.1.3 Control character in the address"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if self.flaw != "lf-dot-lf":
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        while True:
            # The flaw: a line ends at LF, and the CR before it, if any, is dropped.
            line = (await self._reader.readuntil(b"\n")).rstrip(b"\r\n")
            if line == b".":
                break
            lines.append(line[1:] if line.startswith(b".") else line)
        self.envelope.original_content = b"\r\n".join(lines) + b"\r\n"
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class BrokenServer:
    """One of :data:`FLAWS` (or none), on 127.0.0.1 in its own thread, with STARTTLS."""

    def __init__(self, flaw: str | None, workdir: Path, *, mailbox: bool = False) -> None:
        if flaw is not None and flaw not in FLAWS + SAFE:
            raise ValueError(f"unknown flaw {flaw!r}")
        self.flaw = flaw
        self.cafile = workdir / "cert.pem"
        key = workdir / "key.pem"
        self_signed(HOSTNAME, self.cafile, key)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(self.cafile, key)
        self.handler = _Handler(flaw)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.mailbox = mailbox
        self.pop3s_port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> BrokenServer:
        self._thread.start()

        def factory() -> _SMTP:
            return _SMTP(self.handler, hostname=HOSTNAME, tls_context=self.tls)

        async def serve() -> asyncio.Server:
            return await self.loop.create_server(factory, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        if self.mailbox:
            pop = _POP3(self.handler, self.tls)

            async def serve_pop3(tls: ssl.SSLContext | None) -> asyncio.Server:
                return await asyncio.start_server(pop.serve, "127.0.0.1", 0, ssl=tls)

            self.pop3s = asyncio.run_coroutine_threadsafe(serve_pop3(self.tls), self.loop).result(5)
            self.pop3s_port = self.pop3s.sockets[0].getsockname()[1]
            self.pop3 = asyncio.run_coroutine_threadsafe(serve_pop3(None), self.loop).result(5)
            self.pop3_port = self.pop3.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()
            if self.mailbox:
                for server in (self.pop3s, self.pop3):
                    server.close()
                    await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def target_toml(self) -> str:
        """A conformance target description for this server."""
        mailbox = ""
        if self.mailbox:
            mailbox = f"""pop3s = "pop3s://127.0.0.1:{self.pop3s_port}"
pop3 = "pop3://127.0.0.1:{self.pop3_port}"

[accounts.primary]
address = "{ACCOUNT[0]}"
password = "{ACCOUNT[1]}"
"""
        return f"""
name = "broken-{self.flaw or "control"}"
domain = "{DOMAIN}"
hostname = "{HOSTNAME}"
timeout = 3

[endpoints]
smtp = "smtp://127.0.0.1:{self.port}"
{mailbox}
[tls]
cafile = "{self.cafile}"
server_name = "{HOSTNAME}"
"""
