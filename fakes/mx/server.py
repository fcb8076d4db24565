"""FakeMX: a real SMTP server on a loopback address that answers by policy and records all."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, AnyStr, NoReturn

from aiosmtpd.smtp import (
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    syntax,
)

from fakes.mx.catalogue import Reply
from fakes.mx.policy import (
    Accept,
    Context,
    Decision,
    Greylist,
    HangUp,
    Policy,
    Stage,
)
from fakes.mx.records import Attempt, Delivery, Event
from reference.clock import Clock, RealClock
from reference.tls import self_signed, server_context

__all__ = ["FakeMX"]

log = logging.getLogger("fakes.mx")

_START_TIMEOUT = 10.0  # seconds to bind and start the loop thread
_STOP_TIMEOUT = 10.0
_IDLE_TIMEOUT = 300.0  # RFC 5321 4.5.3.2.7: a server waits 5 minutes for the next command
_MAIL_PARAMS = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", "REQUIRETLS"})
_RCPT_PARAMS = frozenset({"NOTIFY", "ORCPT"})  # RFC 3461 DSN
_BARE_ERROR = re.compile(r"([45]\d\d) (?![245]\.\d)[^\r\n]*\Z")
_ENHANCED_FOR = {  # RFC 3463 codes for the errors aiosmtpd itself answers
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "552": "5.3.4",
    "554": "5.7.0",
    "555": "5.5.4",
}
_TEXT_STAGES = ("mail", "rcpt", "data")  # where a 2xx rule reply replaces our own text


class FakeMX:
    """A fake remote MX in its own thread and event loop; usable from sync and async tests.

    ``port=0`` picks a free port; other fake MXs may then bind the same port on other
    loopback addresses (127.0.2.1, 127.0.2.2, ...). The policy may be replaced at any time;
    each decision reads the current one (AUTH settings are read per connection).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        policy: Policy | None = None,
        clock: Clock | None = None,
        *,
        name: str = "fake-mx",
        starttls: bool = True,
        hostname: str | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
        spf: Callable[[str, str, str], Awaitable[str]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.hostname = hostname or "fake-mx.test"
        self.starttls = starttls
        self.clock: Clock = clock or RealClock()
        self.on_delivery = on_delivery  # called in the server thread after each delivery
        # The receiver's SPF check: (client address, MAIL FROM, HELO) -> RFC 7208 result.
        self.spf = spf
        self._policy = policy or Policy.accept_all()
        self._cond = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._attempts: dict[int, Attempt] = {}  # by session number, in connection order
        self._greylist: dict[tuple[str, str, str], float] = {}  # triplet -> first seen
        self._session_ids = itertools.count(1)
        self._queue_ids = itertools.count(1)
        self._sessions: set[_FakeSMTP] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<FakeMX {self.name} {self.host}:{self.port}>"

    # -- what tests read and set ------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        if not isinstance(policy, Policy):
            raise TypeError("policy must be a fakes.mx.Policy")
        self._policy = policy

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    @property
    def attempts(self) -> list[Attempt]:
        """Every session so far, in connection order; open ones as they stand now."""
        with self._cond:
            return list(self._attempts.values())

    def clear(self) -> None:
        """Forget deliveries, attempts and greylist state (sessions open now stop recording)."""
        with self._cond:
            self._deliveries.clear()
            self._attempts.clear()
            self._greylist.clear()

    def wait_for(self, predicate: Callable[[FakeMX], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate(self)`` holds (checked on each record); TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"{self!r}: condition not met within {timeout} s")

    async def wait_for_async(
        self,
        predicate: Callable[[FakeMX], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the wait happens in a worker thread
    ) -> None:
        """:meth:`wait_for` without blocking the caller's event loop."""
        await asyncio.to_thread(self.wait_for, predicate, timeout)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeMX:
        if self._thread is not None:
            raise RuntimeError(f"{self!r} already started")
        tls = _tls_context(self.hostname) if self.starttls else None
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(ready, tls),),
            name=f"fake-mx-{self.name}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"{self!r} did not start within {_START_TIMEOUT} s")
        if self._error is not None:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listener and every open session, and end the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        if not loop.is_closed():  # closed if the thread died on its own
            loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self!r} did not stop within {_STOP_TIMEOUT} s")
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> FakeMX:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event, tls: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stopping = loop, asyncio.Event()
        try:
            server = await loop.create_server(
                lambda: _FakeSMTP(self, tls, loop), self.host, self.port
            )
        except OSError as e:
            self._error = e
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        log.info("event=listen mx=%s address=%s:%d", self.name, self.host, self.port)
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for session in list(self._sessions):
                session.abort()
            await server.wait_closed()
            # Let connection_lost run, so session tasks end before asyncio.run cancels them.
            for _ in range(3):
                await asyncio.sleep(0)

    # -- recording (called from the server thread) -------------------------------------

    def _open(self, session: _FakeSMTP, source: str) -> int:
        sid = next(self._session_ids)
        with self._cond:
            self._sessions.add(session)
            self._attempts[sid] = Attempt(self.name, source, self.clock.now())
            self._cond.notify_all()
        return sid

    def _update(self, sid: int, event: Event | None = None, **changes: Any) -> None:
        with self._cond:
            attempt = self._attempts.get(sid)
            if attempt is None:
                return  # cleared while the session was open
            if event is not None:
                changes["events"] = (*attempt.events, event)
            self._attempts[sid] = dataclasses.replace(attempt, **changes)
            self._cond.notify_all()

    def _close(self, session: _FakeSMTP, sid: int) -> None:
        with self._cond:
            self._sessions.discard(session)
        self._update(sid, closed=True)

    def _deliver(self, sid: int, delivery: Delivery) -> None:
        with self._cond:
            self._deliveries.append(delivery)
            attempt = self._attempts.get(sid)
            if attempt is not None:
                queue_ids = (*attempt.queue_ids, delivery.queue_id)
                self._attempts[sid] = dataclasses.replace(attempt, queue_ids=queue_ids)
            self._cond.notify_all()
        if self.on_delivery is not None:
            try:
                self.on_delivery(delivery)
            except Exception:
                log.exception("event=on_delivery_failed mx=%s", self.name)

    def _greylist_passes(self, triplet: tuple[str, str, str], delay: float) -> bool:
        now = self.clock.now()
        with self._cond:
            first = self._greylist.setdefault(triplet, now)
        return now - first >= delay

    def _next_queue_id(self) -> str:
        return f"{self.name.upper()}{next(self._queue_ids):06X}"


def _tls_context(hostname: str) -> ssl.SSLContext:
    with tempfile.TemporaryDirectory(prefix="fake-mx-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        self_signed(hostname, cert, key)
        return server_context(cert, key)


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.rcpt_params: dict[str, tuple[str, ...]] = {}


class _Hooks:
    """aiosmtpd handler: hands each hook to the session that owns the state."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, lines: list[str]
    ) -> list[str]:
        assert isinstance(server, _FakeSMTP)
        return await server.on_ehlo(hostname, lines)

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        assert isinstance(server, _FakeSMTP)
        return await server.on_helo(hostname)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _FakeSMTP)
        return await server.on_data()


_HOOKS = _Hooks()


class _FakeSMTP(SMTP):
    """One connection: aiosmtpd's protocol machinery, every answer taken from the policy."""

    def __init__(
        self, mx: FakeMX, tls_context: ssl.SSLContext | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        policy = mx.policy
        self._mx = mx
        self._credentials = dict(policy.auth)
        self._sid = 0
        self._source = ""
        self._helo = ""
        self._spf: str | None = None
        self._tls = False
        self._auth_user: str | None = None
        self._data_decision = Decision(Accept())
        super().__init__(
            _HOOKS,
            hostname=mx.hostname,  # else aiosmtpd calls getfqdn() per connection
            ident="ESMTP fake-mx",
            tls_context=tls_context,
            enable_SMTPUTF8=True,
            timeout=_IDLE_TIMEOUT,
            auth_required=bool(self._credentials),
            authenticator=self._check_password if self._credentials else None,
            loop=loop,
        )
        # Set after construction: passed to aiosmtpd with auth_required, False warns on every
        # connection, and a test smarthost without TLS is a legitimate thing to want.
        self._auth_require_tls = policy.auth_require_tls

    # -- connection ---------------------------------------------------------------------

    def _create_envelope(self) -> Envelope:
        return _Envelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # called again with the TLS transport after STARTTLS
        super().connection_made(transport)
        if first:
            self._source = str(transport.get_extra_info("peername")[0])
            self._sid = self._mx._open(self, self._source)
        else:
            self._tls = True
            self._update(tls=True)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._mx._close(self, self._sid)

    def abort(self) -> None:
        raw = self._original_transport or self.transport
        if isinstance(raw, asyncio.Transport):
            raw.abort()

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        m = _BARE_ERROR.match(text)
        if m and self.session is not None and self.session.extended_smtp:
            # aiosmtpd's own protocol errors lack the enhanced code we advertised (RFC 2034).
            enhanced = _ENHANCED_FOR.get(m[1], f"{m[1][0]}.0.0")
            text = f"{m[1]} {enhanced} {text[4:]}"
        await super().push(text)
        if text.rsplit("\n", 1)[-1].startswith("421") and self.transport is not None:
            self.transport.close()  # RFC 5321 3.8: 421 closes the transmission channel

    def _hang_up(self, stage: Stage, argument: str, decision: Decision) -> NoReturn:
        self._event(stage, argument, None, decision)
        if self.transport is not None:
            self.transport.close()
        # End this session's task the way a lost connection does in aiosmtpd, so that no
        # reply is written to the closed transport.
        raise asyncio.CancelledError

    # -- policy -------------------------------------------------------------------------

    def _context(self, recipients: tuple[str, ...] = ()) -> Context:
        sender = self.envelope.mail_from if self.envelope is not None else None
        return Context(self._source, self._tls, self._helo, sender, recipients, self._spf)

    async def _decide(
        self, stage: Stage, recipients: tuple[str, ...] = (), *, wait: bool = True
    ) -> Decision:
        decision = self._mx.policy.decide(stage, self._context(recipients))
        if wait:
            await self._pause(decision)
        return decision

    async def _pause(self, decision: Decision) -> None:
        if decision.delay:
            # Real time on purpose, not the injected clock: this models network and server
            # latency, which a client measures with its own socket timeouts in real time.
            await asyncio.sleep(decision.delay)

    def _fill(self, reply: Reply, rcpt: str = "") -> Reply:
        sender = (self.envelope.mail_from if self.envelope is not None else None) or ""
        return reply.fill(
            {
                "ip": self._source,
                "helo": self._helo,
                "hostname": self.hostname,
                "sender": sender,
                "sender_domain": sender.rpartition("@")[2],
                "rcpt": rcpt,
                "rcpt_domain": rcpt.rpartition("@")[2],
            }
        )

    def _answer(
        self, stage: Stage, argument: str, decision: Decision, accept: Reply, rcpt: str = ""
    ) -> Reply:
        """The reply to send for ``decision`` (recorded); a hang-up raises CancelledError."""
        action = decision.action
        if isinstance(action, HangUp):
            self._hang_up(stage, argument, decision)
        if isinstance(action, Greylist):
            assert self.envelope is not None and self.envelope.mail_from is not None
            triplet = (self._source, self.envelope.mail_from.lower(), rcpt.lower())
            passed = self._mx._greylist_passes(triplet, action.delay)
            reply = accept if passed else self._fill(action.reply, rcpt)
        elif isinstance(action, Reply) and (stage in _TEXT_STAGES or not action.positive):
            reply = self._fill(action, rcpt)
        else:
            reply = accept
        self._event(stage, argument, reply, decision)
        return reply

    def _event(self, stage: Stage, argument: str, reply: Reply | None, decision: Decision) -> None:
        log.info(
            "event=%s mx=%s source=%s argument=%s reply=%r rule=%s",
            stage, self._mx.name, self._source, argument,
            reply.lines()[0] if reply else "hang-up", decision.rule,
        )  # fmt: skip
        self._update(Event(stage, argument, reply, decision.rule, self._mx.clock.now()))

    def _update(self, event: Event | None = None, **changes: Any) -> None:
        self._mx._update(self._sid, event, **changes)

    # -- stages -------------------------------------------------------------------------

    async def _handle_client(self) -> None:
        decision = await self._decide("connect")
        greeting = Reply(220, "", f"{self.hostname} {self.__ident__}")
        reply = self._answer("connect", "", decision, greeting)
        if reply.positive:
            await super()._handle_client()
            return
        try:
            await self.push(reply.wire())
            await self._refuse_until_quit()
        finally:  # also when cancelled by the client's EOF, as aiosmtpd's own loop does
            if self.transport is not None:
                self.transport.close()

    async def _refuse_until_quit(self) -> None:
        # RFC 5321 3.1: after refusing the greeting, wait for QUIT, answer the rest 503.
        while self.transport is not None and not self.transport.is_closing():
            try:
                line = await asyncio.wait_for(self._reader.readline(), _IDLE_TIMEOUT)
            except (TimeoutError, ValueError):  # idle, or a line over the reader's limit
                return
            if not line:
                return
            if line.strip().upper() == b"QUIT":
                await self.push("221 2.0.0 Bye")
                return
            await self.push("503 5.5.1 Error: no valid greeting, send QUIT")

    async def on_ehlo(self, hostname: str, lines: list[str]) -> list[str]:
        self._helo = hostname
        self._update(helo=hostname)
        decision = await self._decide("ehlo")
        reply = self._answer("ehlo", hostname, decision, Reply(250, "", self.hostname))
        if not reply.positive:
            return [reply.wire()]
        assert self.session is not None
        self.session.host_name = hostname  # the 5-argument hook must set it (LIBRARIES.md)
        if not self._credentials:
            lines = [line for line in lines if not line.startswith("250-AUTH")]
        # aiosmtpd advertises neither; we answer with enhanced codes and take pipelining.
        return [*lines[:-1], "250-ENHANCEDSTATUSCODES", "250-PIPELINING", lines[-1]]

    async def on_helo(self, hostname: str) -> str:
        self._helo = hostname
        self._update(helo=hostname)
        decision = await self._decide("ehlo")
        reply = self._answer("ehlo", hostname, decision, Reply(250, "", self.hostname))
        if reply.positive:
            assert self.session is not None
            self.session.host_name = hostname
        return reply.wire()

    def _check_password(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        # Synchronous on purpose: aiosmtpd calls the authenticator without awaiting it.
        if isinstance(data, LoginPassword):
            user = data.login.decode("utf-8", "replace")
            if self._credentials.get(user) == data.password.decode("utf-8", "replace"):
                self._auth_user = user
                self._update(auth_user=user)
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)  # handled=True would hang the client

    def _parse_path(
        self, arg: str | None, keyword: str, known: frozenset[str]
    ) -> tuple[str, list[str]] | str:
        """``(address, parameters)`` from a MAIL/RCPT argument, or the error reply."""
        verb = "MAIL FROM" if keyword == "FROM:" else "RCPT TO"
        syntax_error = f"501 5.5.4 Syntax: {verb}: <address> [SP <parameters>]"
        rest = self._strip_command_keyword(keyword, arg or "")
        if rest is None:
            return syntax_error
        address, param_text = self._getaddr(rest)
        if address is None:
            return "553 5.1.3 Error: malformed address"
        assert self.session is not None
        tokens = (param_text or "").split()
        if not address or (tokens and not self.session.extended_smtp):
            return syntax_error
        params = []
        for token in tokens:
            key, eq, value = token.partition("=")
            key = key.upper()
            if not key.replace("-", "").isalnum() or (eq and not value):  # RFC 5321 4.1.2
                return syntax_error
            if key not in known:
                return f"555 5.5.4 {key} parameter not recognized or not implemented"
            if (key == "BODY" and value.upper() not in ("7BIT", "8BITMIME")) or (
                key == "SIZE" and not value.isdigit()
            ):
                return f"501 5.5.4 Bad {key} value"
            params.append(f"{key}={value}" if eq else key)
        return address, params

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        assert self.envelope is not None
        parsed = self._parse_path(arg, "FROM:", _MAIL_PARAMS)
        if isinstance(parsed, str):
            await self.push(parsed)
            return
        address, params = parsed
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        size = next((int(p[5:]) for p in params if p.startswith("SIZE=")), 0)
        if self.data_size_limit and size > self.data_size_limit:
            await self.push("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        sender = "" if address == "<>" else address
        self.envelope.mail_from = sender  # tentatively: rules see the sender
        if self._mx.spf is not None:
            # As a receiver does: SPF for MAIL FROM (or HELO for a null sender), at MAIL.
            try:
                self._spf = await self._mx.spf(self._source, sender, self._helo)
            except Exception:  # the check itself broke: what a receiver records as temperror
                log.exception("fake-mx.spf source=%s sender=%s", self._source, sender)
                self._spf = "temperror"
        decision = await self._decide("mail")
        reply = self._answer("mail", address, decision, Reply(250, "2.1.0", "OK"))
        if reply.positive:
            self.envelope.mail_options = params
            self.envelope.smtp_utf8 = "SMTPUTF8" in params
        else:
            self.envelope.mail_from = None
        await self.push(reply.wire())

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        assert isinstance(self.envelope, _Envelope)
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        parsed = self._parse_path(arg, "TO:", _RCPT_PARAMS)
        if isinstance(parsed, str) or parsed[0] == "<>":
            await self.push(parsed if isinstance(parsed, str) else "501 5.5.4 Syntax: RCPT TO")
            return
        address, params = parsed
        decision = await self._decide("rcpt", (address,))
        reply = self._answer("rcpt", address, decision, Reply(250, "2.1.5", "OK"), address)
        if reply.positive:
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(params)
            self.envelope.rcpt_params[address] = tuple(params)
        await self.push(reply.wire())

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        assert self.session is not None and self.envelope is not None
        auth_missing = self._auth_required and not self.session.authenticated
        if arg or not self.session.host_name or auth_missing or not self.envelope.rcpt_tos:
            await super().smtp_DATA(arg)  # aiosmtpd answers the protocol errors
            return
        # Decide before the data arrives (rules look at the envelope, not the content),
        # so that a hang-up can happen part-way through the message.
        decision = await self._decide("data", tuple(self.envelope.rcpt_tos), wait=False)
        if isinstance(decision.action, HangUp):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._swallow(decision.action.after)
            await self._pause(decision)
            self._hang_up("data", "", decision)
        self._data_decision = decision
        await super().smtp_DATA(arg)

    async def _swallow(self, limit: int) -> None:
        """Read up to ``limit`` bytes of message (less if it ends first), to hang up on."""
        got = b""
        while len(got) < limit and b"\r\n.\r\n" not in got and not got.startswith(b".\r\n"):
            try:
                chunk = await asyncio.wait_for(self._reader.read(limit - len(got)), _IDLE_TIMEOUT)
            except TimeoutError:
                return
            if not chunk:
                return
            got += chunk

    async def on_data(self) -> str:
        env = self.envelope
        assert isinstance(env, _Envelope) and env.mail_from is not None
        decision, self._data_decision = self._data_decision, Decision(Accept())
        await self._pause(decision)
        queue_id = self._mx._next_queue_id()
        accept = Reply(250, "2.0.0", f"OK queued as {queue_id}")
        reply = self._answer("data", "", decision, accept, env.rcpt_tos[0])
        if reply.positive:
            self._mx._deliver(
                self._sid,
                Delivery(
                    mx=self._mx.name,
                    source=self._source,
                    helo=self._helo,
                    tls=self._tls,
                    mail_from=env.mail_from,
                    rcpt_tos=tuple(env.rcpt_tos),
                    data=env.original_content or b"",
                    time=self._mx.clock.now(),
                    queue_id=queue_id,
                    mail_options=tuple(env.mail_options),
                    rcpt_options=dict(env.rcpt_params),
                    auth_user=self._auth_user,
                    spf=self._spf,
                ),
            )
        return reply.wire()
