"""The ManageSieve server (RFC 5804): connection I/O and one handler per command."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable

from reference.clock import Clock
from reference.credentials import Authenticator, TemporarilyUnavailable, parse_sasl_plain
from reference.managesieve.parser import (
    Command,
    ParseError,
    literal_size,
    parse_command,
    quoted,
    string,
)
from reference.sieve import EXTENSIONS, ScriptError, ScriptStore, SieveError, valid_name
from reference.stream import Closed, LineTooLong, Stream, log_event

log = logging.getLogger("mailspec.managesieve")

LINE_GUARD = 8192  # one line of a command (its literals are read apart)
LITERAL_GUARD = 1 << 20  # past this a literal is not read: the session ends
MAX_AUTH_FAILURES = 3
MAX_ERRORS = 10

_ANY_STATE = frozenset({"CAPABILITY", "LOGOUT", "NOOP"})
_UNAUTHENTICATED = _ANY_STATE | {"STARTTLS", "AUTHENTICATE"}
_AUTHENTICATED = _ANY_STATE | {
    "PUTSCRIPT",
    "CHECKSCRIPT",
    "SETACTIVE",
    "GETSCRIPT",
    "LISTSCRIPTS",
    "DELETESCRIPT",
    "RENAMESCRIPT",
    "HAVESPACE",
}


# How many arguments each command of the authenticated state takes (RFC 5804 2).
_ARITY = {
    "PUTSCRIPT": 2,
    "CHECKSCRIPT": 1,
    "SETACTIVE": 1,
    "GETSCRIPT": 1,
    "DELETESCRIPT": 1,
    "RENAMESCRIPT": 2,
    "HAVESPACE": 2,
}


class _Hangup(Exception):
    pass


class ManageSieveServer:
    """Serves ManageSieve sessions on a :class:`ScriptStore`; one ``handle`` per client."""

    def __init__(
        self,
        scripts: ScriptStore,
        auth: Authenticator,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        clock: Clock,
        idle_timeout: float = 30 * 60.0,
        max_redirects: int = 4,
    ) -> None:
        self.scripts = scripts
        self.auth = auth
        self.hostname = hostname
        self.tls_context = tls_context
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_redirects = max_redirects

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        await _Session(self, Stream(reader, writer, self.clock), tls=tls).run()


def _no(text: str, code: str = "") -> bytes:
    prefix = f"({code}) " if code else ""
    return b"NO " + prefix.encode() + quoted(text) + b"\r\n"


def _ok(text: str = "", code: str = "") -> bytes:
    prefix = f"({code}) " if code else ""
    return b"OK " + prefix.encode() + (quoted(text) if text else b"") + b"\r\n"


class _Session:
    def __init__(self, server: ManageSieveServer, stream: Stream, *, tls: bool) -> None:
        self.server = server
        self.stream = stream
        self.tls = tls
        self.id = secrets.token_hex(4)
        self.user: str | None = None
        self.errors = 0
        self.auth_failures = 0

    def log(self, event: str, **fields: object) -> None:
        log_event(log, event, session=self.id, peer=self.stream.peer, **fields)

    async def send(self, data: bytes) -> None:
        await self.stream.write(data, 60.0)

    async def run(self) -> None:
        self.log("managesieve.connect", tls=self.tls)
        reason = "logout"
        try:
            await self.send(self.capabilities() + _ok(f"{self.server.hostname} ManageSieve ready"))
            while True:
                data = await self.read_command()
                if data is None:
                    continue
                command = parse_command(data)
                if isinstance(command, ParseError):
                    await self.error(command.reason)
                    continue
                if not await self.dispatch(command):
                    break
        except TimeoutError:
            reason = "timeout"
            await self.last_words(b'BYE "Idle for too long"\r\n')
        except LineTooLong:
            reason = "line-too-long"
            await self.last_words(b'BYE "Line too long"\r\n')
        except _Hangup:
            reason = "hangup"
        except Closed:
            reason = "closed"
        except Exception:
            reason = "error"
            log.exception("managesieve.error session=%s", self.id)
        finally:
            await self.stream.close()
            self.log("managesieve.disconnect", reason=reason, user=self.user or "-")

    async def last_words(self, data: bytes) -> None:
        with contextlib.suppress(Closed, TimeoutError):
            await self.send(data)

    async def read_command(self) -> bytes | None:
        """One command with its literals; None when an over-long literal was skipped."""
        timeout = self.server.idle_timeout
        line = data = await self.stream.readline(LINE_GUARD, timeout)
        too_large = False
        # Each line that ends announcing a literal is followed by its octets and more line.
        while (size := literal_size(line)) is not None:
            if size > LITERAL_GUARD:
                await self.last_words(b'BYE "Literal too large"\r\n')
                raise _Hangup
            body = await self.stream.readexactly(size, timeout)
            if size > self.server.scripts.max_size:
                too_large, body = True, b""  # read and dropped: the session stays in step
            line = await self.stream.readline(LINE_GUARD, timeout)
            data += body + line
        if too_large:
            limit = self.server.scripts.max_size
            await self.send(_no(f"Script over the limit of {limit} bytes", "QUOTA/MAXSIZE"))
            return None
        return data

    async def error(self, reason: str) -> None:
        self.errors += 1
        await self.send(_no(f"Syntax error: {reason}"))
        if self.errors >= MAX_ERRORS:
            await self.last_words(b'BYE "Too many errors"\r\n')
            raise _Hangup

    def capabilities(self) -> bytes:
        """RFC 5804 1.7: SASL only where it may be used (after TLS); STARTTLS until then."""
        lines = [
            b'"IMPLEMENTATION" "mailspec"',
            b'"SASL" ' + (b'"PLAIN"' if self.tls else b'""'),
            b'"SIEVE" ' + quoted(" ".join(EXTENSIONS)),
            b'"MAXREDIRECTS" ' + quoted(str(self.server.max_redirects)),
            b'"VERSION" "1.0"',
        ]
        if not self.tls and self.server.tls_context is not None:
            lines.append(b'"STARTTLS"')
        return b"\r\n".join(lines) + b"\r\n"

    async def dispatch(self, command: Command) -> bool:
        """Run one command; False when the session ends."""
        allowed = _AUTHENTICATED if self.user else _UNAUTHENTICATED
        if command.verb not in allowed:
            known = command.verb in _AUTHENTICATED | _UNAUTHENTICATED
            await self.send(_no("Log in first" if known else f"Unknown command {command.verb}"))
            return True
        self.errors = 0
        arity = _ARITY.get(command.verb)
        if arity is not None and len(command.args) != arity:
            await self.send(_no(f"{command.verb}: expected {arity} argument(s)"))
            return True
        handler: Callable[[Command], Awaitable[bool | None]] = getattr(
            self, f"do_{command.verb.lower()}"
        )
        try:
            return await handler(command) is not False
        except (Closed, _Hangup, TimeoutError, LineTooLong):
            raise
        except ScriptError as e:
            await self.send(_no(str(e), e.code))
        except Exception:
            log.exception("managesieve.error session=%s command=%s", self.id, command.verb)
            await self.send(_no("Internal error", "TRYLATER"))
        return True

    # -- any state ------------------------------------------------------------------------

    async def do_capability(self, command: Command) -> None:
        await self.send(self.capabilities() + _ok())

    async def do_noop(self, command: Command) -> None:
        if command.args:  # RFC 5804 2.13: the tag comes back
            await self.send(b"OK (TAG " + quoted(command.args[0]) + b') "Done"\r\n')
        else:
            await self.send(_ok("Done"))

    async def do_logout(self, command: Command) -> bool:
        await self.send(_ok("Logout"))
        return False

    # -- not authenticated ----------------------------------------------------------------

    async def do_starttls(self, command: Command) -> None:
        context = self.server.tls_context
        if self.tls or context is None:
            await self.send(_no("TLS not available"))
            return
        reply = _ok("Begin TLS negotiation now")
        discarded = await self.stream.start_tls(context, 60.0, reply)
        self.tls = True
        self.log("managesieve.starttls", discarded=discarded)
        # RFC 5804 2.2: the capabilities again, now with the SASL mechanisms.
        await self.send(self.capabilities() + _ok())

    async def do_authenticate(self, command: Command) -> None:
        if not command.args:
            await self.send(_no("AUTHENTICATE: name a mechanism"))
            return
        if not self.tls:
            # RFC 5804 2.1 / 4: no plaintext credentials over an unprotected channel.
            await self.send(_no("Authentication requires TLS (STARTTLS first)", "ENCRYPT-NEEDED"))
            return
        if command.args[0].upper() != "PLAIN":
            await self.send(_no("Unsupported mechanism"))
            return
        if len(command.args) > 1:
            answer = command.args[1]
        else:
            await self.send(b'""\r\n')  # RFC 5804 2.1: an empty challenge
            data = await self.read_command()
            line = (data or b"").strip()
            parsed = parse_command(b"X " + line + b"\r\n")
            if isinstance(parsed, ParseError) or len(parsed.args) != 1:
                await self.send(_no("Bad SASL response"))
                return
            answer = parsed.args[0]
        if answer == "*":
            await self.send(_no("Authentication cancelled"))  # RFC 5804 2.1
            return
        try:
            authzid, authcid, password = parse_sasl_plain(base64.b64decode(answer, validate=True))
        except (ValueError, binascii.Error):
            await self.send(_no("Invalid PLAIN response"))
            return
        if authzid and authzid.lower() != authcid.lower():
            await self.send(_no("Not authorized as that identity", "AUTH-TOO-WEAK"))
            return
        try:
            user = await self.server.auth.authenticate(authcid, password, client=self.stream.client)
        except TemporarilyUnavailable as e:
            self.auth_failures += 1
            self.log("managesieve.login", user=authcid, result="unavailable", why=str(e))
            await self.send(_no("Login temporarily unavailable, try again later", "TRYLATER"))
            return
        if user is None:
            self.auth_failures += 1
            self.log("managesieve.login", user=authcid, result="fail")
            await self.send(_no("Authentication failed"))
            if self.auth_failures >= MAX_AUTH_FAILURES:
                await self.last_words(b'BYE "Too many authentication failures"\r\n')
                raise _Hangup
            return
        self.user = user
        self.log("managesieve.login", user=user, result="ok")
        await self.send(_ok("Logged in"))

    # -- authenticated ----------------------------------------------------------------------

    @property
    def account(self) -> str:
        assert self.user is not None
        return self.user

    async def do_havespace(self, command: Command) -> None:
        args = command.args
        if not args[1].isdigit():
            await self.send(_no("HAVESPACE: the size must be a number"))
            return
        if not valid_name(args[0]):
            await self.send(_no("Invalid script name"))
            return
        await asyncio.to_thread(self.server.scripts.has_space, self.account, args[0], int(args[1]))
        await self.send(_ok())

    async def do_putscript(self, command: Command) -> None:
        args = command.args
        name, text = args
        try:
            await asyncio.to_thread(self.server.scripts.put, self.account, name, text)
        except SieveError as e:
            await self.send(b"NO " + string(str(e)) + b"\r\n")  # RFC 5804 2.6
            return
        self.log("managesieve.put", user=self.account, script=name, size=len(text))
        await self.send(_ok())

    async def do_checkscript(self, command: Command) -> None:
        args = command.args
        try:
            await asyncio.to_thread(self.server.scripts.check, args[0])
        except SieveError as e:
            await self.send(b"NO " + string(str(e)) + b"\r\n")  # RFC 5804 2.12
            return
        await self.send(_ok())

    async def do_listscripts(self, command: Command) -> None:
        listing = await asyncio.to_thread(self.server.scripts.listing, self.account)
        out = b"".join(
            string(n) + (b" ACTIVE" if active else b"") + b"\r\n" for n, active in listing
        )
        await self.send(out + _ok())

    async def do_setactive(self, command: Command) -> None:
        args = command.args
        await asyncio.to_thread(self.server.scripts.activate, self.account, args[0])
        self.log("managesieve.setactive", user=self.account, script=args[0] or "-")
        await self.send(_ok())

    async def do_getscript(self, command: Command) -> None:
        args = command.args
        if not valid_name(args[0]):
            await self.send(_no("Invalid script name"))
            return
        text = await asyncio.to_thread(self.server.scripts.get, self.account, args[0])
        if text is None:
            await self.send(_no("No such script", "NONEXISTENT"))
            return
        raw = text.encode("utf-8")
        await self.send(b"{%d}\r\n" % len(raw) + raw + b"\r\n" + _ok())

    async def do_deletescript(self, command: Command) -> None:
        args = command.args
        await asyncio.to_thread(self.server.scripts.delete, self.account, args[0])
        await self.send(_ok())

    async def do_renamescript(self, command: Command) -> None:
        args = command.args
        await asyncio.to_thread(self.server.scripts.rename, self.account, args[0], args[1])
        await self.send(_ok())
