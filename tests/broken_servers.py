"""Small mail servers broken on purpose, each in a way the conformance suite must catch.

The SMTP server is aiosmtpd (which gets the basics right), the POP3 server a small RFC 1939
one written here; each flaw puts back one bug, the way real servers had it. The flaws the
mutation harness (tests/mutants.py, tests/test_mutation.py) plants, one at a time, are
named in :data:`SMTP_FLAWS` and :data:`POP3_FLAWS` with what each breaks; the first ones
are the historical ones:

- ``lf-dot-lf``: DATA read line by line on LF with CR stripped, so ``<LF>.<LF>`` ends the
  data and what follows runs as commands (SMTP smuggling, CVE-2023-51764 and relatives);
- ``open-relay``: RCPT takes any address, for anyone;
- ``starttls-injection``: plaintext pipelined behind STARTTLS is kept and run inside TLS
  (CVE-2011-0411);
- ``control-characters``: a NUL or another control character in the EHLO/HELO name or in a
  MAIL/RCPT path is taken as part of it (aiosmtpd's own behaviour, and the reference's
  until it refused them);
- ``mangled-body``: the stored body is not what was sent: 8-bit octets and control
  characters become ``?``, lines are cut at 900 octets, and a leading dot is doubled (the
  stuffing put back).

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
import base64
import itertools
import re
import ssl
import threading
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from reference.tls import self_signed

__all__ = ["DOMAIN", "FLAWS", "HOSTNAME", "POP3_FLAWS", "SAFE", "SMTP_FLAWS", "BrokenServer"]

HOSTNAME = "broken.example.test"
DOMAIN = "example.test"
MAILBOXES = {f"{local}@{DOMAIN}" for local in ("postmaster", "alice", "bob")}
# flaw -> the bug it plants (SMTP; the POP3 server, with mailbox=True, reads what was stored)
SMTP_FLAWS = {
    "lf-dot-lf": "DATA ends at <LF>.<LF>: SMTP smuggling",
    "open-relay": "RCPT takes any domain",
    "starttls-injection": "plaintext pipelined behind STARTTLS runs inside TLS",
    "control-characters": "control characters taken into HELO names and paths",
    "mangled-body": "8-bit octets, long lines and leading dots mangled in the stored body",
    "eight-bit-stripped": "the high bit of each stored octet is cleared",
    "long-lines-cut": "stored lines are cut at 900 octets",
    "dots-kept": "the sender's dot-stuffing is stored (a leading '..' stays)",
    "rcpt-without-mail": "RCPT is taken before MAIL",
    "rset-keeps-sender": "RSET answers 250 but the transaction goes on",
    "noop-resets": "NOOP discards the transaction",
    "ehlo-keeps-transaction": "EHLO in a transaction leaves it open",
    "quit-stays-open": "QUIT answers 221 but keeps the connection",
    "unknown-hangs-up": "an unknown command ends the session",
    "verbs-case-sensitive": "lower-case verbs are unknown",
    "one-transaction": "a second MAIL in the session gets 503",
    "null-sender-refused": "MAIL FROM:<> is refused",
    "no-bare-postmaster": "RCPT TO:<postmaster> without a domain is refused",
    "few-recipients": "more than 50 recipients get 452",
    "short-lines": "command lines over 300 octets get 500",
    "short-local-part": "local parts over 32 octets are refused",
    "helo-refused": "HELO gets 502 (EHLO only)",
    "greeting-nameless": "the greeting does not name the server",
    "double-reply": "NOOP gets two replies",
    "multiline-spaces": "every line of a multiline reply has code and space",
    "starttls-param": "STARTTLS with a parameter starts TLS",
    "starttls-readvertised": "EHLO inside TLS offers STARTTLS again",
    "starttls-keeps-helo": "STARTTLS keeps the EHLO: MAIL needs no new one",
    "starttls-keeps-transaction": "a transaction begun before STARTTLS survives it",
    "source-route-refused": "a source route <@a:user@d> is refused",
    "size-ignored": "a message over the declared SIZE limit is accepted",
}
POP3_FLAWS = {
    "pop3-greeting-err": "the greeting is -ERR",
    "pop3-noop-err": "NOOP answers -ERR",
    "pop3-stat-size": "STAT counts the size in lines, not octets",
    "pop3-list-one-wrong": "LIST n answers with another message's number",
    "pop3-no-byte-stuffing": "multi-line responses are not byte-stuffed",
    "pop3-retr-short": "RETR drops the last line",
    "pop3-top-whole": "TOP n k returns the whole body",
    "pop3-uidl-unstable": "UIDL ids change between sessions",
    "pop3-dele-ignored": "a deleted message can still be read",
    "pop3-rset-ignored": "RSET does not undelete",
    "pop3-quit-keeps": "QUIT removes nothing",
    "pop3-drop-updates": "a session that ends without QUIT removes what it deleted",
    "pop3-plaintext-login": "USER/PASS log in before TLS",
    "pop3-stls-readvertised": "CAPA inside TLS offers STLS again",
    "pop3-stls-injection": "commands pipelined behind STLS run after the handshake",
    "pop3-control-user": "a USER name with a control character logs in as the name without it",
    "pop3-capa-err": "CAPA answers -ERR after login",
}
FLAWS = tuple(SMTP_FLAWS) + tuple(POP3_FLAWS)
SAFE = ("tls-abort",)
ACCOUNT = (f"alice@{DOMAIN}", "alice-password")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_VERBS = {
    b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY",
    b"EXPN", b"HELP", b"STARTTLS", b"AUTH",
}  # fmt: skip


class _Handler:
    def __init__(self, flaw: str | None) -> None:
        self.flaw = flaw
        # (uid, message) in arrival order: what the POP3 maildrop serves
        self.messages: list[tuple[int, bytes]] = []
        self._uids = itertools.count(1)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.flaw == "null-sender-refused" and not address.strip("<>"):
            return "550 5.1.7 Null sender refused"
        if self.flaw == "short-local-part" and len(address.partition("@")[0]) > 32:
            return "553 5.1.7 Local part too long"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local, _, domain = address.lower().rpartition("@")
        if not local and domain == "postmaster" and self.flaw != "no-bare-postmaster":
            local, domain = "postmaster", DOMAIN  # RFC 5321 4.5.1: postmaster, bare
        if self.flaw == "short-local-part" and len(local) > 32:
            return "553 5.1.3 Local part too long"
        if self.flaw == "few-recipients" and len(envelope.rcpt_tos) >= 50:
            return "452 4.5.3 Too many recipients"
        if self.flaw != "open-relay":
            if domain != DOMAIN:
                return "554 5.7.1 Relay access denied"
            if f"{local}@{domain}" not in MAILBOXES:
                return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if self.flaw == "mangled-body":
            data = _mangle(data, eight_bit=True, cut=True, dots=True, controls=True)
        elif self.flaw in ("eight-bit-stripped", "long-lines-cut", "dots-kept"):
            f = self.flaw
            data = _mangle(
                data, eight_bit=f == "eight-bit-stripped", cut=f == "long-lines-cut",
                dots=f == "dots-kept",
            )  # fmt: skip
        self.messages.append((next(self._uids), data))
        if isinstance(server, _SMTP):
            server.transactions += 1
        return "250 2.0.0 OK"


def _mangle(
    data: bytes, *, eight_bit: bool, cut: bool, dots: bool, controls: bool = False
) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = []
    for line in body.split(b"\r\n"):
        if eight_bit:
            line = bytes(b if b < 0x80 else 0x3F for b in line)
        if controls:  # "unsafe" control characters sanitised away (HT kept)
            line = bytes(b if b >= 0x20 or b == 0x09 else 0x3F for b in line)
        if cut:
            line = line[:900]
        lines.append(b"." + line if dots and line.startswith(b".") else line)
    return head + sep + b"\r\n".join(lines)


class _POP3:
    """RFC 1939 POP3 (with CAPA, STLS, TOP and UIDL) serving the stored messages to alice@;
    a POP3 flaw, when one is planted, breaks one thing of it."""

    def __init__(self, handler: _Handler, tls: ssl.SSLContext, implicit: bool) -> None:
        self.handler = handler
        self.tls = tls
        self.implicit = implicit
        self.flaw = handler.flaw
        # pop3-uidl-unstable: each session numbers the ids anew
        self._sessions = itertools.count()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        flaw = self.flaw
        secure = self.implicit
        user = ""
        authed = False
        drop: list[tuple[int, bytes]] = []
        deleted: set[int] = set()
        session = next(self._sessions)

        def send(text: bytes) -> None:
            writer.write(text + b"\r\n")

        def multi(first: bytes, data: bytes) -> None:
            send(first)
            for line in data.split(b"\r\n"):
                stuff = line.startswith(b".") and flaw != "pop3-no-byte-stuffing"
                send(b"." + line if stuff else line)
            send(b".")

        def message(arg: str) -> tuple[int, bytes] | None:
            n = int(arg) if arg.isdigit() else 0
            if not 1 <= n <= len(drop) or (n in deleted and flaw != "pop3-dele-ignored"):
                return None
            return n, drop[n - 1][1]

        def update() -> None:
            gone = {drop[n - 1][0] for n in deleted}
            self.handler.messages[:] = [m for m in self.handler.messages if m[0] not in gone]

        def row(n: int, m: tuple[int, bytes], uid: bool) -> bytes:
            if uid:
                return b"%d uid-%d-%d" % (n, m[0], session if flaw == "pop3-uidl-unstable" else 0)
            return b"%d %d" % (n, len(m[1]))

        send(b"-ERR not ready" if flaw == "pop3-greeting-err" else b"+OK broken POP3")
        try:
            while line := await reader.readline():
                text = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb, _, arg = text.partition(" ")
                verb = verb.upper()
                args = arg.split()
                if verb == "QUIT":
                    if authed and flaw != "pop3-quit-keeps":
                        update()
                    authed = False
                    send(b"+OK bye")
                    break
                if verb == "STLS" and not secure:
                    if flaw == "tls-abort" and reader._buffer:  # type: ignore[attr-defined]
                        send(b"+OK Begin TLS negotiation")
                        break  # hang up rather than start TLS behind queued plaintext
                    send(b"+OK Begin TLS negotiation")
                    await writer.drain()
                    # Plaintext read ahead of the handshake is dropped (RFC 2595 4 / 3207
                    # 4.2); asyncio's reader would otherwise keep it and read it after TLS.
                    queued = bytes(reader._buffer)  # type: ignore[attr-defined]
                    reader._buffer.clear()  # type: ignore[attr-defined]
                    await writer.start_tls(self.tls)
                    if flaw == "pop3-stls-injection" and queued:
                        reader._buffer.extend(queued)  # type: ignore[attr-defined]
                    secure = True
                    continue
                if verb == "CAPA":
                    if authed and flaw == "pop3-capa-err":
                        send(b"-ERR no")
                        continue
                    caps = b"USER\r\nTOP\r\nUIDL\r\nSASL PLAIN"
                    if not secure or flaw == "pop3-stls-readvertised":
                        caps += b"\r\nSTLS"
                    multi(b"+OK", caps)
                elif verb == "NOOP" and authed:
                    send(b"-ERR no" if flaw == "pop3-noop-err" else b"+OK")
                elif verb == "USER" and not authed:
                    if _CONTROL.search(arg) and flaw != "pop3-control-user":
                        send(b"-ERR bad name")
                        continue
                    user = _CONTROL.sub("", arg)
                    send(b"+OK")
                elif verb in ("PASS", "AUTH") and not authed:
                    if verb == "AUTH":
                        plain = base64.b64decode(args[1]) if len(args) == 2 else b""
                        _, user, arg = plain.decode("utf-8", "replace").split("\0")[:3] or ["", ""]
                    if not secure and flaw != "pop3-plaintext-login":
                        send(b"-ERR [AUTH] TLS first")
                    elif (user, arg) == ACCOUNT:
                        authed, drop = True, list(self.handler.messages)
                        send(b"+OK")
                    else:
                        send(b"-ERR [AUTH] no")
                elif not authed:
                    send(b"-ERR not logged in")
                elif verb == "STAT":
                    live = [m for n, m in enumerate(drop, 1) if n not in deleted]
                    size = sum(
                        m[1].count(b"\r\n") if flaw == "pop3-stat-size" else len(m[1]) for m in live
                    )
                    send(b"+OK %d %d" % (len(live), size))
                elif verb in ("LIST", "UIDL"):
                    uid = verb == "UIDL"

                    if args:
                        found = message(args[0])
                        if found is None:
                            send(b"-ERR no such message")
                            continue
                        n = found[0]
                        shown = n + 1 if flaw == "pop3-list-one-wrong" and not uid else n
                        send(b"+OK " + row(shown, drop[n - 1], uid))
                    else:
                        rows = [row(n, m, uid) for n, m in enumerate(drop, 1) if n not in deleted]
                        multi(b"+OK", b"\r\n".join(rows)) if rows else send(b"+OK\r\n.")
                elif verb in ("RETR", "TOP") and args:
                    found = message(args[0])
                    if found is None:
                        send(b"-ERR no such message")
                        continue
                    msg = found[1].removesuffix(b"\r\n")
                    if verb == "TOP":
                        head, _, body = msg.partition(b"\r\n\r\n")
                        k = int(args[1]) if len(args) > 1 and args[1].isdigit() else 0
                        lines = body.split(b"\r\n")
                        if flaw != "pop3-top-whole":
                            lines = lines[:k]
                        msg = head + b"\r\n\r\n" + b"\r\n".join(lines)
                    elif flaw == "pop3-retr-short":
                        msg = msg.rpartition(b"\r\n")[0]
                    multi(b"+OK", msg)
                elif verb == "DELE" and args:
                    found = message(args[0])
                    if found is None:
                        send(b"-ERR no such message")
                        continue
                    deleted.add(found[0])
                    send(b"+OK")
                elif verb == "RSET":
                    if flaw != "pop3-rset-ignored":
                        deleted.clear()
                    send(b"+OK")
                else:
                    send(b"-ERR unknown command")
                await writer.drain()
            else:
                if authed and flaw == "pop3-drop-updates":
                    update()
        finally:
            writer.close()


class _SMTP(SMTP):
    def __init__(self, handler: _Handler, error_sleep: float = 0.0, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.flaw = handler.flaw
        self.error_sleep = error_sleep
        self.transactions = 0
        self._greeted = False
        self._kept: Envelope | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrading = self._original_transport is not None and self.transport is not None
        saved = bytes(self._reader._buffer) if upgrading else b""
        session, envelope = (self.session, self.envelope) if upgrading else (None, None)
        super().connection_made(transport)
        if upgrading and saved and self.flaw == "starttls-injection":
            # The flaw: what came in plaintext behind STARTTLS is read as if through TLS.
            self._reader._buffer.extend(saved)
        if upgrading and session is not None and self.flaw == "starttls-keeps-helo":
            self.session.host_name = session.host_name
            self.session.extended_smtp = session.extended_smtp
        if upgrading and self.flaw == "starttls-keeps-transaction":
            self._kept = envelope
        if self.flaw in ("verbs-case-sensitive", "short-lines"):
            self._reader.readuntil = self._readuntil(self._reader.readuntil)  # type: ignore[method-assign]

    def _readuntil(self, read: Any) -> Any:
        async def readuntil(separator: bytes = b"\n") -> bytes:
            line: bytes = await read(separator)
            if separator != b"\n":
                return line  # DATA reads its lines with b"\r\n": those are not commands
            verb = line.split(b" ", 1)[0].rstrip(b"\r\n")
            if self.flaw == "short-lines" and len(line) > 302:
                return b"XTOOLONG\r\n"
            if (
                self.flaw == "verbs-case-sensitive"
                and verb.upper() in _VERBS
                and not verb.isupper()
            ):
                return b"X" + line
            return line

        return readuntil

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode()
        if not self._greeted:
            self._greeted = True
            if self.flaw == "greeting-nameless":
                text = "220 ESMTP ready"
        if self.error_sleep and text[:1] in ("4", "5"):
            # Postfix's smtpd_error_sleep_time: each error reply waits (1 s by default).
            await asyncio.sleep(self.error_sleep)
        await super().push(text)
        if (
            self.flaw == "starttls-readvertised"
            and self._tls_protocol
            and text.startswith("250-SIZE")
        ):
            await super().push("250-STARTTLS")
        if self.flaw == "unknown-hangs-up" and text.startswith("500 Error: command"):
            assert self.transport is not None
            self.transport.close()

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
        await super().smtp_STARTTLS("" if self.flaw == "starttls-param" else arg)

    async def smtp_EHLO(self, arg: str) -> None:
        if await self._refuse_controls(arg, "501 5.5.4 Control character in the name"):
            return
        envelope = self.envelope
        await super().smtp_EHLO(arg)
        if self.flaw == "ehlo-keeps-transaction" and envelope is not None and arg:
            self.envelope = envelope
        if self._kept is not None:
            self.envelope, self._kept = self._kept, None

    async def smtp_HELO(self, arg: str) -> None:
        if self.flaw == "helo-refused":
            await self.push("502 5.5.1 Use EHLO")
        elif not await self._refuse_controls(arg, "501 5.5.4 Control character in the name"):
            await super().smtp_HELO(arg)

    async def smtp_NOOP(self, arg: str) -> None:
        if self.flaw == "noop-resets":
            self._set_rset_state()
        await super().smtp_NOOP(arg)
        if self.flaw == "double-reply":
            await self.push("250 2.0.0 OK again")

    async def smtp_RSET(self, arg: str) -> None:
        if self.flaw == "rset-keeps-sender" and not arg:
            await self.push("250 2.0.0 OK")
            return
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        if self.flaw == "quit-stays-open" and not arg:
            await self.push("221 2.0.0 Bye")
            return
        await super().smtp_QUIT(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        if await self._refuse_controls(arg, "553 5.1.7 Control character in the address"):
            return
        if self.flaw == "one-transaction" and self.transactions:
            await self.push("503 5.5.1 One message per session")
        elif self.flaw == "source-route-refused" and "<@" in (arg or ""):
            await self.push("501 5.1.7 Source routes refused")
        else:
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        if await self._refuse_controls(arg, "553 5.1.3 Control character in the address"):
            return
        assert self.envelope is not None
        if self.flaw == "rcpt-without-mail" and self.envelope.mail_from is None:
            await self.push("250 2.1.5 OK")
        elif self.flaw == "source-route-refused" and "<@" in (arg or ""):
            await self.push("501 5.1.3 Source routes refused")
        else:
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
        if self.data_size_limit and len(self.envelope.original_content) > self.data_size_limit:
            self._set_post_data_state()
            await self.push("552 5.3.4 Message too big")
            return
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class BrokenServer:
    """One of :data:`FLAWS` (or none), on 127.0.0.1 in its own thread, with STARTTLS."""

    def __init__(
        self, flaw: str | None, workdir: Path, *, mailbox: bool = False, error_sleep: float = 0.0
    ) -> None:
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
        self.error_sleep = error_sleep
        self.pop3s_port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> BrokenServer:
        self._thread.start()

        def factory() -> _SMTP:
            return _SMTP(self.handler, self.error_sleep, hostname=HOSTNAME, tls_context=self.tls)

        async def serve() -> asyncio.Server:
            return await self.loop.create_server(factory, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        if self.mailbox:

            async def serve_pop3(tls: ssl.SSLContext | None) -> asyncio.Server:
                pop = _POP3(self.handler, self.tls, implicit=tls is not None)
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
