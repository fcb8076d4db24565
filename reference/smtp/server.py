"""The MX and submission listeners: each stage asks the policy, each answer is a reply.

aiosmtpd gives the connection handling, STARTTLS and the AUTH challenges; this module owns
the rest of the protocol, because the platform promises more than aiosmtpd does:

- a line ends only at CRLF: a command or a message with a bare LF or bare CR is refused,
  so no end-of-data variant can smuggle a second message (CVE-2023-51764 family);
- no command argument carries a NUL or another control character (RFC 5321 4.1.2): each
  is refused before it can reach a Received: field, an envelope or the log;
- MAIL and RCPT take the DSN parameters (RFC 3461) and AUTH= (RFC 4954 5), kept for the
  spool; BDAT (RFC 3030 CHUNKING) next to DATA;
- every reply but the greeting, EHLO/HELO and the 3yz intermediates carries an enhanced
  status code (RFC 2034), and the idle timeout runs on the injected clock.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import ssl
from base64 import b64decode
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, AnyStr

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, TLSSetupException, syntax
from aiosmtpd.smtp import Session as AioSession

from reference.clock import Clock
from reference.credentials import Authenticator
from reference.log import event
from reference.mail import replies
from reference.mail.envelope import DsnRequest, RecipientDsn
from reference.mail.message import Message
from reference.mail.replies import DEFAULT_ENHANCED, Reply
from reference.mail.xtext import xtext_decode
from reference.metrics import ListenerMetrics
from reference.policy import Policy, Session, Transaction
from reference.smtp.authlimit import AuthLimiter
from reference.smtp.commands import (
    CommandError,
    MailFrom,
    control_refusal,
    has_control,
    parse_bdat,
    parse_mail,
    parse_rcpt,
)
from reference.smtp.proxy import MAX_PAYLOAD, V2_SIGNATURE, ProxyError, parse_v2
from reference.spool import Spool, SpoolError

log = logging.getLogger("mailspec.smtp")

OnQueued = Callable[[str], None]

# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF. MAIL and RCPT
# grow with their extensions' parameters (RFC 1870 +26, RFC 6531 +10, RFC 3461 +100 on
# MAIL and +500 on RCPT, RFC 4954 +500 for AUTH=), so they get the text-line bound.
COMMAND_LIMIT = 512
PARAMETER_COMMAND_LIMIT = 1000
# RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF, plus the dot that
# transparency may add.
DATA_LINE_LIMIT = 1001
# Protocol errors (500-504, 555) tolerated in one session before it is closed with 421, as
# Postfix's smtpd_hard_error_limit does: a client this confused is not sending mail.
ERROR_LIMIT = 20
_PROTOCOL_ERRORS = {500, 501, 502, 503, 504, 555}
_CHUNK_READ = 64 * 1024


class Listener:
    """What one SMTP port is for: the MX (role "mx") or submission (role "submission")."""

    def __init__(
        self,
        role: str,
        *,
        hostname: str,
        policy: Policy,
        spool: Spool,
        clock: Clock,
        auth: Authenticator,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool = False,
        max_message_size: int,
        max_recipients: int,
        timeout: float,
        on_queued: OnQueued | None = None,
        proxy_from: Sequence[str] = (),
        max_connections: int = 1000,
        max_per_client: int = 20,
        auth_limiter: AuthLimiter | None = None,
        metrics: ListenerMetrics | None = None,
    ) -> None:
        self.role = role
        self.hostname = hostname
        self.policy = policy
        self.spool = spool
        self.clock = clock
        self.auth = auth
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.timeout = timeout
        self.on_queued = on_queued
        # Networks whose connections may open with a PROXY v1 line (listen.mx_proxy_from):
        # a load balancer's, or a test's speaking for another client address.
        self.proxy_from = [ipaddress.ip_network(n, strict=False) for n in proxy_from]
        self.sessions: set[MailspecSMTP] = set()
        # Connection limits (per node and listener, like Postfix's anvil).
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.active = 0
        self.per_client: Counter[str] = Counter()
        # Failed logins: counted, slowed, locked out (None: unlimited, for tests).
        self.auth_limiter = auth_limiter
        # Connections and replies, counted for /metrics (None: not counted).
        self.metrics = metrics

    def is_proxy(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.proxy_from)

    def admit(self, ip: str, *, count_total: bool = True) -> Reply | None:
        """Take a connection slot for ``ip``, or say why not (421 4.7.0)."""
        if count_total and self.active >= self.max_connections:
            return replies.TOO_MANY_CONNECTIONS
        # A load balancer's own address stands for many clients: PROXY names each one.
        if not self.is_proxy(ip) or not count_total:
            if self.per_client[ip] >= self.max_per_client:
                return replies.TOO_MANY_FROM_CLIENT
            self.per_client[ip] += 1
        if count_total:
            self.active += 1
        return None

    def release(self, ip: str, *, count_total: bool = True) -> None:
        if self.per_client[ip] > 0:
            self.per_client[ip] -= 1
            if not self.per_client[ip]:
                del self.per_client[ip]
        if count_total:
            self.active = max(0, self.active - 1)

    def protocol(self) -> MailspecSMTP:
        return MailspecSMTP(
            Handler(self),
            listener=self,
            hostname=self.hostname,
            ident="ESMTP mailspec",
            # Implicit TLS: TLS comes from the listening socket, not from STARTTLS.
            tls_context=None if self.implicit_tls else self.tls_context,
            require_starttls=False,
            auth_required=self.role == "submission",
            # On implicit TLS the socket is TLS already: MailspecSMTP lifts this for it
            # (passing False here would make aiosmtpd warn on every connection).
            auth_require_tls=True,
            data_size_limit=self.max_message_size,
            enable_SMTPUTF8=True,
            timeout=self.timeout,
            loop=asyncio.get_running_loop(),
        )

    async def start(self, host: str, port: int) -> asyncio.Server:
        ssl_ctx = self.tls_context if self.implicit_tls else None
        return await asyncio.get_running_loop().create_server(
            self.protocol, host, port, ssl=ssl_ctx, reuse_address=True
        )


class MailspecEnvelope(Envelope):
    """aiosmtpd's envelope plus what the platform keeps: parameters, chunks, state."""

    def __init__(self) -> None:
        super().__init__()
        # mail_from is "" for the null reverse-path, so whether MAIL was given is its own flag.
        self.mail_given = False
        self.mail: MailFrom | None = None
        # RFC 3461: NOTIFY and ORCPT per accepted recipient, ORCPT decoded from its xtext.
        self.rcpt_dsn: dict[str, RecipientDsn] = {}
        self.chunks: list[bytes] = []
        self.chunk_octets = 0
        self.chunked = False
        # The policy's transaction, from an accepted MAIL to the end of DATA.
        self.tx: Transaction | None = None

    def close(self) -> None:
        if self.tx is not None:
            self.tx.close()


class MailspecSMTP(SMTP):
    """aiosmtpd's SMTP with strict line endings, DSN, BDAT, enhanced codes, async AUTH."""

    def __init__(self, handler: Handler, *, listener: Listener, **kw: Any) -> None:
        # Set before aiosmtpd's __init__, which looks at every member (properties too).
        self.handler = handler
        self.listener = listener
        self.clock = listener.clock
        super().__init__(handler, **kw)
        if listener.implicit_tls:
            self._auth_require_tls = False
        self._errors = 0
        self._commands = 0
        self._proxied_peer: tuple[str, int] | None = None
        # Connection slots taken: the socket's peer, and the client a PROXY line named.
        self._admitted: str | None = None
        self._client_slot: str | None = None
        self._last_activity = 0.0
        self._idle_limit = float(listener.timeout)
        self._watchdog: asyncio.Task[None] | None = None

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.listener.sessions.add(self)
        super().connection_made(transport)
        if self._proxied_peer is not None and self.session is not None:
            # STARTTLS makes a new session: the client is still the one PROXY named.
            self.session.peer = self._proxied_peer  # type: ignore[assignment]

    def connection_lost(self, error: Exception | None) -> None:
        self.listener.sessions.discard(self)
        if isinstance(self.envelope, MailspecEnvelope):
            self.envelope.close()
        if self._admitted is not None:
            self.listener.release(self._admitted)
            self._admitted = None
        if self._client_slot is not None:
            self.listener.release(self._client_slot, count_total=False)
            self._client_slot = None
        super().connection_lost(error)

    def _create_envelope(self) -> MailspecEnvelope:
        return MailspecEnvelope()

    def _new_transaction(self) -> None:
        """Forget the transaction (RSET, EHLO, end of data): aiosmtpd's rset state."""
        if isinstance(self.envelope, MailspecEnvelope):
            self.envelope.close()
        self.envelope = self._create_envelope()

    @property
    def env(self) -> MailspecEnvelope:
        env = self.envelope
        if not isinstance(env, MailspecEnvelope):
            # Only before the first connection (aiosmtpd inspects its members at init).
            env = self.envelope = self._create_envelope()
        return env

    @property
    def tls_active(self) -> bool:
        if self.listener.implicit_tls:
            return True
        return self._tls_protocol is not None

    # -- idle timeout on the injected clock ----------------------------------------------

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd calls this on connect and per command; one watchdog task per session
        # checks the time of the last activity instead of a timer per command.
        self._last_activity = self.clock.monotonic()
        self._idle_limit = float(duration or self._timeout_duration)
        if self._watchdog is None:
            self._watchdog = self.loop.create_task(self._watch_idle())
            # aiosmtpd cancels this "handle" when the connection goes: a Task cancels too.
            self._timeout_handle = self._watchdog  # type: ignore[assignment]

    def _touch(self) -> None:
        self._last_activity = self.clock.monotonic()

    async def _watch_idle(self) -> None:
        while True:
            wait = self._last_activity + self._idle_limit - self.clock.monotonic()
            if wait <= 0:
                break
            await self.clock.sleep(wait)
        event(log, "timeout", peer=_peer_ip(self.session), idle=self._idle_limit)
        if self.transport is not None and not self.transport.is_closing():
            # RFC 5321 4.5.3.2: the server may close an idle session; it says why first.
            t = replies.TIMEOUT
            self._writer.write(f"{t.code} {t.enhanced} {self.hostname} {t.text}\r\n".encode())
            self.transport.close()

    # -- replies ----------------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            # A reply may echo the client's words (aiosmtpd's VRFY does), and bytes that are
            # not UTF-8 reach us as lone surrogates: send them as '?', never fail the reply.
            status = status.encode("utf-8", "replace").decode("utf-8")
            code = status[:3]
            if code.isdigit() and int(code) in _PROTOCOL_ERRORS:
                self._errors += 1
            status = _with_enhanced(status)
            if self.listener.metrics is not None:
                self.listener.metrics.reply(status)
            await super().push(status)
        else:
            await super().push(status)

    async def reply(self, r: Reply) -> None:
        await self.push(str(r))

    async def _push_raw(self, text: str) -> None:
        # The greeting and the EHLO/HELO replies carry no enhanced code (RFC 2034 3).
        if self.listener.metrics is not None:
            self.listener.metrics.reply(text)
        await SMTP.push(self, text)

    # -- the command loop ---------------------------------------------------------------------

    async def _handle_client(self) -> None:
        assert self.session is not None
        if self._proxy_timeout is not None and not await self._proxy_handshake():
            return
        if self.listener.metrics is not None:
            self.listener.metrics.connected()
        peer = _peer_ip(self.session)
        refused = self.listener.admit(peer)
        if refused is not None:
            # RFC 5321 3.1: a server that cannot serve now answers 421 instead of 220.
            event(log, "connection.refused", peer=peer, reason=refused.text)
            await self._push_raw(
                f"{refused.code} {refused.enhanced} {self.hostname} {refused.text}"
            )
            assert self.transport is not None
            self.transport.close()
            return
        self._admitted = peer
        await self._push_raw(f"220 {self.hostname} {self.__ident__}")
        while self.transport is not None:
            try:
                line = await self._read_command_line()
                if line is not None and not await self._proxy_line(line):
                    self._commands += 1
                    await self._dispatch(line)
                if self._errors >= ERROR_LIMIT and self.transport is not None:
                    await self.reply(replies.TOO_MANY_ERRORS)
                    self.transport.close()
                    return
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except ConnectionResetError:
                self._writer.close()
                raise
            except asyncio.IncompleteReadError:
                # The client hung up (between commands, or in a line, DATA or a chunk). This
                # session ends here: aiosmtpd's way of saying so, cancelling this task, can be
                # lost on the way (a check awaiting Python 3.11's asyncio.wait_for, as
                # redis-py and dnspython do, swallows a cancel that lands as its inner await
                # completes: CPython gh-86296). And self.transport becomes None only in
                # connection_lost, which runs after this task yields: looping to read again
                # would meet the same end of stream at once, forever, never yielding, and
                # freeze the whole node (SIGTERM included).
                if self.transport is not None:
                    self.transport.close()
                return
            except Exception as error:
                if isinstance(error, TLSSetupException):
                    if self.transport is not None:
                        self.transport.close()
                    self.connection_lost(error)
                    return
                status = await self.handle_exception(error)
                await self.push(status)

    async def _proxy_handshake(self) -> bool:
        """PROXY protocol (v1/v2) before the greeting, as aiosmtpd does it."""
        assert self.session is not None and self.transport is not None
        self._reset_timeout(self._proxy_timeout)
        self.session.proxy_data = await get_proxy(self._reader)
        status: Any = False
        if self.session.proxy_data:
            status = await self._call_handler_hook("PROXY", self.session.proxy_data)
        if status is MISSING or not status:
            self.transport.close()
            return False
        self._reset_timeout()
        return True

    async def _proxy_line(self, line: bytes) -> bool:
        """A PROXY v1 line first thing from a trusted network: take the client it names.

        The greeting has gone out already (it does not depend on the client), so a plain
        client never waits; the proxy's line is read as the first "command", unanswered.
        """
        if self._commands or not self.listener.proxy_from:
            return False
        if line == b"" and self.listener.is_proxy(_peer_ip(self.session)):
            return await self._proxy_v2()
        if not line.startswith(b"PROXY "):
            return False
        assert self.session is not None and self.transport is not None
        real = _peer_ip(self.session)
        try:
            trusted = any(ipaddress.ip_address(real) in n for n in self.listener.proxy_from)
        except ValueError:
            trusted = False
        if not trusted:
            return False  # an ordinary unknown command, answered as such
        self._commands += 1
        parts = line.decode("ascii", "replace").split(" ")
        try:
            if parts[1] == "UNKNOWN":
                return True
            family, src, _dst, sport = parts[1], parts[2], parts[3], int(parts[4])
            addr = ipaddress.ip_address(src)
            if (family, addr.version) not in (("TCP4", 4), ("TCP6", 6)) or len(parts) != 6:
                raise ValueError(family)
        except (IndexError, ValueError):
            await self.reply(replies.BAD_PROXY_HEADER)
            self.transport.close()
            return True
        return await self._take_client(real, str(addr), sport)

    async def _take_client(self, via: str, client: str, port: int) -> bool:
        """From now on the session is the client's that the proxy named."""
        assert self.session is not None and self.transport is not None
        self._proxied_peer = (client, port)
        # aiosmtpd types peer as str; at run time it is the (host, port) of peername.
        self.session.peer = self._proxied_peer  # type: ignore[assignment]
        event(log, "proxy", via=via, client=client)
        refused = self.listener.admit(client, count_total=False)
        if refused is not None:
            event(log, "connection.refused", peer=client, via=via, reason=refused.text)
            await self.reply(refused)
            self.transport.close()
            return True
        self._client_slot = client
        return True

    async def _proxy_v2(self) -> bool:
        """PROXY v2: its signature began with CRLF, read as an empty first line."""
        assert self.session is not None and self.transport is not None
        real = _peer_ip(self.session)
        self._commands += 1
        try:
            rest = await asyncio.wait_for(self._reader.readexactly(10), 5)
            if rest != V2_SIGNATURE[2:]:
                raise ProxyError("not a PROXY v2 signature")
            head = await asyncio.wait_for(self._reader.readexactly(4), 5)
            length = int.from_bytes(head[2:4], "big")
            if length > MAX_PAYLOAD:
                raise ProxyError("header too long")
            client = parse_v2(head, await asyncio.wait_for(self._reader.readexactly(length), 5))
        except (ProxyError, ValueError, TimeoutError, asyncio.IncompleteReadError) as e:
            event(log, "proxy.malformed", via=real, error=str(e))
            await self.reply(replies.BAD_PROXY_HEADER)
            self.transport.close()
            return True
        if client is None:
            return True  # LOCAL: the proxy speaks for itself
        return await self._take_client(real, *client)

    async def _read_command_line(self) -> bytes | None:
        """One command line without its CRLF, or None when it was answered already;
        :class:`asyncio.IncompleteReadError` when the client has gone."""
        try:
            line: bytes = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as error:
            # Longer than any command may be: read to the end of it, answer once, so that
            # no tail of it is ever taken for a command of its own.
            await self._reader.read(error.consumed)
            while True:
                try:
                    await self._reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)
            await self.reply(replies.LINE_TOO_LONG)
            return None
        # RFC 5321 2.3.8: lines end with CRLF. A bare LF (or CR) is where SMTP smuggling
        # starts, so such a line is refused rather than guessed at.
        if not line.endswith(b"\r\n"):
            await self.reply(replies.BARE_LF_COMMAND)
            return None
        line = line[:-2]
        if b"\r" in line:
            await self.reply(replies.BARE_CR_COMMAND)
            return None
        return line

    async def _dispatch(self, line: bytes) -> None:
        assert self.session is not None
        if not line:
            await self.reply(replies.EMPTY_COMMAND)
            return
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            await self.reply(replies.EMPTY_COMMAND)
            return
        arg: str | None = None
        # Only spaces are stripped: a control character at either end (HT, VT, FF are
        # white space to bytes.strip) must be seen, and refused, like one inside.
        if arg_bytes.strip(b" "):
            # UTF-8 arguments are allowed (RFC 6531); surrogateescape keeps any other
            # octets recoverable.
            arg = arg_bytes.strip(b" ").decode("utf-8", "surrogateescape")
        limit = (
            PARAMETER_COMMAND_LIMIT
            if verb in ("MAIL", "RCPT") and self.session.extended_smtp
            else COMMAND_LIMIT
        )
        if len(line) + 2 > limit:
            await self.reply(replies.LINE_TOO_LONG)
            return
        if not self._tls_handshake_okay and verb != "QUIT":
            await self.reply(replies.NEED_TLS_FIRST)
            return
        method = self._smtp_methods.get(verb)
        if method is None:
            event(log, "unknown.command", peer=_peer_ip(self.session), verb=verb[:20])
            await self.reply(replies.UNKNOWN_COMMAND)
            return
        self._reset_timeout()
        # RFC 5321 4.1.2: no argument of any command takes a control character. Refused
        # here, once for every verb (aiosmtpd's VRFY, NOOP, HELP... included), before the
        # octet can reach a Received: field, the envelope or the spool.
        refusal = control_refusal(verb, arg)
        if refusal is not None:
            # What was sent, escaped by the log formatter; never an AUTH line (credentials).
            shown = None if verb == "AUTH" or arg is None else arg[:200]
            event(log, "command.refused", peer=_peer_ip(self.session), verb=verb, arg=shown)
            await self.reply(refusal)
            return
        await method(arg)

    # -- EHLO, HELO, STARTTLS, AUTH ---------------------------------------------------------

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        assert self.session is not None
        if not hostname:
            await self.reply(replies.SYNTAX_EHLO)
            return
        # RFC 5321 4.1.4: EHLO resets the transaction, as RSET does.
        self._new_transaction()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [
            self.hostname,
            "PIPELINING",  # RFC 2920
            f"SIZE {self.data_size_limit}",  # RFC 1870
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "DSN",  # RFC 3461
            "CHUNKING",  # RFC 3030
        ]
        if self.tls_context is not None and not self.tls_active:
            lines.append("STARTTLS")  # RFC 3207 4.2: never again once TLS is up
        if not self._auth_require_tls or self.tls_active:
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        lines.append("HELP")
        for i, text in enumerate(lines):
            await self._push_raw(f"250{' ' if i == len(lines) - 1 else '-'}{text}")

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str | None) -> None:
        assert self.session is not None
        if not hostname:
            await self.reply(replies.SYNTAX_HELO)
            return
        self._new_transaction()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        await self._push_raw(f"250 {self.hostname}")

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self.reply(replies.SYNTAX_STARTTLS)
            return
        if self.tls_active:
            await self.reply(replies.TLS_ALREADY_ACTIVE)
            return
        if not self.tls_context:
            await self.reply(replies.TLS_UNAVAILABLE)
            return
        # RFC 3207 4.2, CVE-2011-0411: whatever the client sent behind STARTTLS came in
        # plaintext and must never run as if it came through TLS. aiosmtpd clears the
        # buffer once TLS is up; clear what is here already too.
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str | None) -> None:
        """RFC 4954 4, owned here rather than aiosmtpd's: its smtp_AUTH also sets the
        deprecated ``Session.login_data``, which logs a warning on every successful AUTH.
        The session keeps ``authenticated`` and ``auth_data`` (the account's address)."""
        assert self.session is not None
        # RFC 4954 4: "The AUTH command is not permitted during a mail transaction."
        if self.env.mail_given:
            await self.reply(replies.AUTH_IN_TRANSACTION)
            return
        if await self.check_helo_needed("EHLO"):
            return
        if not self.session.extended_smtp:
            await self.reply(replies.AUTH_UNKNOWN)
            return
        if self._auth_require_tls and not self.tls_active:
            await self.reply(replies.AUTH_NEEDS_TLS)
            return
        if self.session.authenticated:
            await self.reply(replies.AUTH_ALREADY)
            return
        args = (arg or "").split()
        if not args:
            await self.reply(replies.AUTH_NO_MECHANISM)
            return
        if len(args) > 2:
            await self.reply(replies.AUTH_TOO_MANY_VALUES)
            return
        method = self._auth_methods.get(args[0])
        if method is None:
            await self.reply(replies.AUTH_UNKNOWN_MECHANISM)
            return
        result = await method.method(self, args)
        if not isinstance(result, AuthResult):
            return  # the mechanism answered already
        if result.success:
            self.session.authenticated = True
            self.session.auth_data = result.auth_data
            await self.reply(replies.AUTH_OK)
        elif not result.handled:
            await self.push(result.message or str(replies.AUTH_FAILED))

    async def _check(
        self, mechanism: str, login: bytes, password: bytes, authzid: bytes = b""
    ) -> AuthResult:
        try:
            user = login.decode("utf-8")
            secret = password.decode("utf-8")
            claimed = authzid.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        peer = _peer_ip(self.session)
        if has_control(user) or has_control(claimed):
            # RFC 4616 2, RFC 4013 2.3: no identity holds a control character; no account
            # can match one, and it must not reach the log raw or count as a failed login.
            event(log, "auth.refused", mechanism=mechanism, user=user, peer=peer)
            return AuthResult(
                success=False, handled=False, message=str(replies.CONTROL_IN_IDENTITY)
            )
        limiter = self.listener.auth_limiter
        if limiter is not None:
            locked = await limiter.locked(user, peer)
            if locked is not None:
                # Locked: the password is not even looked at (RFC 4954 6: 454 4.7.0).
                event(log, "auth", mechanism=mechanism, user=user, peer=peer, locked=locked.scope)
                return AuthResult(success=False, handled=False, message=str(replies.AUTH_LOCKED))
        address = await self.listener.auth.authenticate(user, secret)
        event(log, "auth", mechanism=mechanism, user=user, peer=peer, ok=address is not None)
        if address is None:
            if limiter is not None:
                delay = await limiter.failed(user, peer)
                if delay > 0:
                    await self.clock.sleep(delay)  # the slowdown, on the injected clock
            # handled=False: aiosmtpd answers 535 5.7.8 (handled=True would send nothing).
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=address)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            raw = await self.challenge_auth("")
            if not isinstance(raw, bytes):
                # challenge_auth answered already (501 for "*" or bad base64).
                return AuthResult(success=False, handled=True)
        else:
            try:
                raw = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.reply(replies.AUTH_BAD_BASE64)
                return AuthResult(success=False, handled=True)
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            await self.reply(replies.AUTH_BAD_PLAIN)
            return AuthResult(success=False, handled=True)
        return await self._check("PLAIN", parts[1], parts[2], parts[0])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.reply(replies.AUTH_BAD_BASE64)
                return AuthResult(success=False, handled=True)
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check("LOGIN", login, password)

    # -- the transaction: MAIL, RCPT, DATA, BDAT --------------------------------------------

    async def _transaction_allowed(self) -> bool:
        """EHLO/HELO given and, where required, AUTH; replies itself when not."""
        return not (await self.check_helo_needed() or await self.check_auth_needed("MAIL"))

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        assert self.session is not None
        if not await self._transaction_allowed():
            return
        env = self.env
        if env.mail_given:
            await self.reply(replies.NESTED_MAIL)
            return
        try:
            cmd = parse_mail(arg, extended=self.session.extended_smtp)
        except CommandError as e:
            await self.reply(e.reply)
            return
        # RFC 1870 6: a declared size over the fixed maximum is refused at once.
        if cmd.size is not None and self.data_size_limit and cmd.size > self.data_size_limit:
            await self.reply(
                replies.MESSAGE_TOO_BIG.with_text(
                    f"Message size exceeds fixed maximum message size ({self.data_size_limit})"
                )
            )
            return
        r = await self.handler.mail(self, self.session, env, cmd)
        if r.positive:
            env.mail_given = True
            env.mail = cmd
            env.mail_from = cmd.address
            env.smtp_utf8 = cmd.smtputf8
        await self.reply(r)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        assert self.session is not None
        if not await self._transaction_allowed():
            return
        env = self.env
        if not env.mail_given or env.mail is None:
            await self.reply(replies.NEED_MAIL)
            return
        try:
            cmd = parse_rcpt(arg, extended=self.session.extended_smtp, smtputf8=env.mail.smtputf8)
        except CommandError as e:
            await self.reply(e.reply)
            return
        if len(env.rcpt_tos) >= self.listener.max_recipients:
            # RFC 5321 4.5.3.1.10: too many recipients is a 452, and the client retries.
            await self.reply(replies.TOO_MANY_RECIPIENTS)
            return
        address = self.listener.policy.canonical_recipient(cmd.address)
        r = await self.handler.rcpt(self, self.session, env, address)
        if r.positive:
            env.rcpt_tos.append(address)
            if cmd.notify is not None or cmd.orcpt is not None:
                kind, _, xtext = (cmd.orcpt or "").partition(";")
                orcpt = (kind, xtext_decode(xtext)) if cmd.orcpt else None
                env.rcpt_dsn[address] = RecipientDsn(cmd.notify, orcpt)
        await self.reply(r)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if not await self._transaction_allowed():
            return
        env = self.env
        if not env.mail_given:
            await self.reply(replies.NEED_MAIL)
            return
        if not env.rcpt_tos:
            await self.reply(replies.NEED_RCPT)
            return
        if env.chunked:
            await self.reply(replies.DATA_AFTER_BDAT)
            return
        if arg:
            await self.reply(replies.SYNTAX_DATA)
            return
        await self.reply(replies.START_DATA)
        content, problem = await self._read_data()
        if problem is not None or content is None:
            self._new_transaction()
            await self.reply(problem or replies.TEMP_LOCAL_ERROR)
            return
        await self._accept(content)

    async def _read_data(self) -> tuple[bytes | None, Reply | None]:
        """Mail data up to CRLF.CRLF, unstuffed (RFC 5321 4.5.2), or the reason to refuse it.

        The whole of the data is read whatever goes wrong, so that nothing in it is ever
        taken for a command; only ``.`` alone on a CRLF line ends it (RFC 5321 4.1.1.4).
        """
        limit = self.data_size_limit
        lines: list[bytes] = []
        size = 0
        mid_line = False  # after a piece of an over-long line, until its CRLF
        too_big = too_long = bare = False
        while True:
            try:
                line: bytes = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as e:
                piece: bytes = await self._reader.read(e.consumed)
                size += len(piece)
                too_long = mid_line = True
                # Pieces never end inside a CRLF, so any CR or LF here is bare.
                bare = bare or b"\r" in piece or b"\n" in piece
                lines.clear()
                continue
            self._touch()
            if not mid_line and line == b".\r\n":
                break
            ended_piece = mid_line
            mid_line = False
            size += len(line)
            body = line[:-2]
            if b"\n" in body or b"\r" in body:
                bare = True
            if limit and size > limit:
                too_big = True
            if ended_piece or len(line) > DATA_LINE_LIMIT:
                too_long = True
            if too_big or too_long or bare:
                lines.clear()
                continue
            lines.append(line[1:] if line.startswith(b".") else line)
        if too_big:
            return None, replies.MESSAGE_TOO_BIG
        if bare:
            return None, replies.BARE_NEWLINE_DATA
        if too_long:
            return None, replies.DATA_LINE_TOO_LONG
        return b"".join(lines), None

    @syntax("BDAT chunk-size [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        assert self.session is not None
        try:
            size, last = parse_bdat(arg)
        except CommandError as e:
            await self.reply(e.reply)
            return
        env = self.env
        problem: Reply | None = None
        if not self.session.host_name:
            problem = replies.BAD_SEQUENCE.with_text("Error: send HELO/EHLO first")
        elif self._auth_required and not self.session.authenticated:
            problem = replies.AUTH_REQUIRED
        elif not env.mail_given:
            problem = replies.NEED_MAIL
        elif not env.rcpt_tos:
            problem = replies.NEED_RCPT
        # RFC 3030 2: the chunk follows the command at once, whatever the reply will be:
        # read all of it, so that none of it is ever taken for a command.
        keep = problem is None
        remaining = size
        limit = self.data_size_limit
        while remaining:
            piece = await self._reader.readexactly(min(remaining, _CHUNK_READ))
            remaining -= len(piece)
            self._touch()
            if keep:
                env.chunk_octets += len(piece)
                if limit and env.chunk_octets > limit:
                    keep = False
                    problem = replies.MESSAGE_TOO_BIG
                    env.chunks.clear()
                else:
                    env.chunks.append(piece)
        if problem is not None:
            if problem is replies.MESSAGE_TOO_BIG:
                # The transaction is over: later chunks of it get 503.
                self._new_transaction()
            await self.reply(problem)
            return
        env.chunked = True
        if not last:
            await self.reply(replies.CHUNK_RECEIVED.with_text(f"{size} octets received"))
            return
        content = b"".join(env.chunks)
        env.chunks.clear()
        if _has_bare_newline(content):
            # Not BINARYMIME: the content is text lines, and it may leave by DATA later.
            self._new_transaction()
            await self.reply(replies.BARE_NEWLINE_DATA)
            return
        await self._accept(content)

    async def _accept(self, content: bytes) -> None:
        """The message is whole: the policy decides, the spool keeps it, the client hears."""
        assert self.session is not None
        env = self.env
        env.content = env.original_content = content
        try:
            r = await self.handler.message(self, self.session, env)
        finally:
            self._new_transaction()
        if r.positive:
            self._errors = 0
        await self.reply(r)


def _has_bare_newline(content: bytes) -> bool:
    """Whether a CR or LF appears other than as a CRLF pair."""
    return content.count(b"\r") != content.count(b"\r\n") or content.count(b"\n") != content.count(
        b"\r\n"
    )


def _with_enhanced(status: str) -> str:
    """Add the default enhanced code to a reply written without one (aiosmtpd's own).

    RFC 2034 3: with ENHANCEDSTATUSCODES every reply carries one, but for the greeting
    and the EHLO/HELO replies (sent raw); RFC 3463 has no class 3, so 3yz replies (354,
    the 334 AUTH challenges) have none.
    """
    if len(status) < 4 or not status[:3].isdigit() or status[3] not in " -":
        return status
    code = int(status[:3])
    if code // 100 == 3 or code not in DEFAULT_ENHANCED:
        return status
    rest = status[4:]
    head = rest.split(" ", 1)[0]
    if head.count(".") == 2 and head.replace(".", "").isdigit():
        return status
    return f"{status[:4]}{DEFAULT_ENHANCED[code]} {rest}"


def _peer_ip(session: AioSession | None) -> str:
    if session is None or not session.peer:
        return ""
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class Handler:
    """Turns the SMTP stages into policy calls and policy results into replies."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def _session(self, server: MailspecSMTP, session: AioSession) -> Session:
        user = session.auth_data if session.authenticated else None
        return Session(
            role=self.listener.role,
            peer=_peer_ip(session),
            helo=session.host_name or "",
            tls=server.tls_active,
            user=user if isinstance(user, str) else None,
        )

    async def handle_exception(self, error: Exception) -> str:
        # The details go to the log; the client hears only that it may try again.
        log.exception("smtp.exception")
        return str(replies.TEMP_LOCAL_ERROR)

    async def mail(
        self, server: MailspecSMTP, session: AioSession, env: MailspecEnvelope, cmd: MailFrom
    ) -> Reply:
        env.close()  # a transaction refused earlier leaves nothing running
        tx = self.listener.policy.begin(self._session(server, session), cmd.address)
        result = await self.listener.policy.mail(tx)
        if result.refuses and result.reply:
            tx.close()
            event(
                log,
                "mail.refused",
                peer=_peer_ip(session),
                sender=cmd.address or "<>",
                reply=result.reply.code,
                reason=result.reason,
            )
            return result.reply
        env.tx = tx
        return replies.SENDER_OK

    async def rcpt(
        self, server: MailspecSMTP, session: AioSession, env: MailspecEnvelope, address: str
    ) -> Reply:
        tx = env.tx
        assert tx is not None, "RCPT before an accepted MAIL"
        result = await self.listener.policy.rcpt(tx, address)
        if result.refuses and result.reply:
            event(
                log,
                "rcpt.refused",
                peer=tx.peer,
                sender=env.mail_from or "<>",
                rcpt=address,
                reply=result.reply.code,
                reason=result.reason,
            )
            return result.reply
        tx.recipients.append(address)
        return replies.RECIPIENT_OK

    async def message(
        self, server: MailspecSMTP, session: AioSession, env: MailspecEnvelope
    ) -> Reply:
        # The queue id comes before the DATA checks (as Postfix's cleanup has one before the
        # milters run): what they log about the message, refused or not, carries it.
        spool = self.listener.spool
        qid = spool.new_qid()
        tx = env.tx
        assert tx is not None, "DATA before an accepted MAIL"
        s = tx.session
        # The one parse of the message: every check reads this value.
        received = Message(env.original_content or b"")
        tx.message, tx.qid = received, qid
        sender = tx.sender
        rcpts = list(env.rcpt_tos)
        result = await self.listener.policy.data(tx)
        if result.refuses and result.reply:
            event(
                log,
                "data.refused",
                qid=qid,
                peer=s.peer,
                sender=sender or "<>",
                reply=result.reply.code,
                reason=result.reason,
            )
            return result.reply
        # Checks that accept may edit the header (Authentication-Results, a signature) and
        # decide where the message goes (a folder, a lane); the trace header goes on top.
        data = self._received(s, qid, rcpts, env) + result.edit(received)
        mail = env.mail
        try:
            await spool.enqueue(
                sender,
                rcpts,
                data,
                qid=qid,
                lane=result.filing.lane or "regular",
                folder=result.filing.folder,
                role=s.role,
                peer=s.peer,
                user=s.user,
                body=mail.body if mail else None,
                smtputf8=bool(mail and mail.smtputf8),
                # RFC 3461: RET and ENVID (as sent, in xtext), NOTIFY and ORCPT per recipient.
                dsn=DsnRequest(
                    mail.ret if mail else None, mail.envid if mail else None, dict(env.rcpt_dsn)
                ),
            )
        except SpoolError as e:
            event(log, "spool.error", level=logging.ERROR, qid=qid, error=str(e))
            return replies.SPOOL_FULL
        event(
            log,
            "queued",
            qid=qid,
            role=s.role,
            peer=s.peer,
            user=s.user,
            sender=sender or "<>",
            rcpts=len(rcpts),
            size=len(data),
            tls=s.tls,
        )
        if self.listener.on_queued:
            self.listener.on_queued(qid)
        return replies.QUEUED.with_text(f"Ok: queued as {qid}")

    def _received(self, s: Session, qid: str, rcpts: list[str], env: MailspecEnvelope) -> bytes:
        # RFC 5321 4.4: the trace header; "with" per RFC 3848 (ESMTP, ESMTPS, ESMTPSA…),
        # UTF8SMTP… per RFC 6531 3.7.3 when the transaction was SMTPUTF8.
        utf8 = env.mail is not None and env.mail.smtputf8
        proto = ("UTF8SMTP" if utf8 else "ESMTP") + ("S" if s.tls else "") + ("A" if s.user else "")
        helo = s.helo or "unknown"
        date = email.utils.formatdate(self.listener.clock.now(), localtime=False)
        for_part = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
        line = (
            f"Received: from {helo} ([{s.peer}])\r\n\tby {self.listener.hostname} (mailspec) "
            f"with {proto} id {qid}{for_part};\r\n\t{date}\r\n"
        )
        return line.encode("utf-8", "surrogateescape")
