"""The MX and submission listeners: each stage asks the policy, each answer is a reply."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope
from aiosmtpd.smtp import Session as AioSession

from reference.clock import Clock
from reference.credentials import Authenticator
from reference.log import event
from reference.policy import Policy, Session
from reference.smtp import replies
from reference.smtp.replies import DEFAULT_ENHANCED, Reply
from reference.spool import Spool, SpoolError

log = logging.getLogger("mailspec.smtp")

# Replies that never carry an enhanced code (RFC 2034 3: greeting, EHLO/HELO, and the
# intermediate replies that are not about a transaction).
_NO_ENHANCED = {220, 334, 354}

OnQueued = Callable[[str], None]


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
        self.sessions: set[MailspecSMTP] = set()

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
            auth_require_tls=not self.implicit_tls,
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


class MailspecSMTP(SMTP):
    """aiosmtpd's SMTP with enhanced status codes everywhere and asynchronous AUTH."""

    def __init__(self, handler: Handler, *, listener: Listener, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.listener = listener
        self._verbatim = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.listener.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.listener.sessions.discard(self)
        super().connection_lost(error)

    @property
    def tls_active(self) -> bool:
        if self.listener.implicit_tls:
            return True
        return self._tls_protocol is not None

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and not self._verbatim:
            await super().push(_with_enhanced(status))
        else:
            await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        # EHLO lines are capabilities, not replies about a transaction: no enhanced codes.
        self._verbatim = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._verbatim = False

    async def _check(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        try:
            user = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        address = await self.listener.auth.authenticate(user, secret)
        event(
            log,
            "auth",
            mechanism=mechanism,
            user=user,
            peer=_peer_ip(self.session),
            ok=address is not None,
        )
        if address is None:
            # handled=False: aiosmtpd answers 535 5.7.8 (handled=True would send nothing).
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=address)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            raw = await self.challenge_auth("")
            if not isinstance(raw, bytes):
                return AuthResult(success=False, handled=False)
        else:
            try:
                raw = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._check("PLAIN", parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=False)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=False)
        return await self._check("LOGIN", login, password)


def _with_enhanced(status: str) -> str:
    """Add the default enhanced code to a reply written without one (aiosmtpd's own)."""
    if len(status) < 4 or not status[:3].isdigit() or status[3] not in " -":
        return status
    code = int(status[:3])
    if code in _NO_ENHANCED or code not in DEFAULT_ENHANCED:
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


def _reply(r: Reply) -> str:
    return str(r)


class Handler:
    """Turns aiosmtpd's hooks into policy calls and policy results into replies."""

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

    async def handle_EHLO(
        self,
        server: MailspecSMTP,
        session: AioSession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # The five-argument hook replaces aiosmtpd's bookkeeping: keep the HELO name.
        session.host_name = hostname
        # RFC 2920 PIPELINING and RFC 2034 ENHANCEDSTATUSCODES, before the final line.
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self,
        server: MailspecSMTP,
        session: AioSession,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        result = await self.listener.policy.mail(self._session(server, session), address)
        if result.refuses and result.reply:
            event(
                log,
                "mail.refused",
                peer=_peer_ip(session),
                sender=address,
                reply=result.reply.code,
                reason=result.reason,
            )
            return _reply(result.reply)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return _reply(replies.SENDER_OK)

    async def handle_RCPT(
        self,
        server: MailspecSMTP,
        session: AioSession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.listener.max_recipients:
            # RFC 5321 4.5.3.1.10: too many recipients is a 452, and the client retries.
            return _reply(replies.TOO_MANY_RECIPIENTS)
        s = self._session(server, session)
        result = await self.listener.policy.rcpt(s, envelope.mail_from or "", address)
        if result.refuses and result.reply:
            event(
                log,
                "rcpt.refused",
                peer=s.peer,
                sender=envelope.mail_from,
                rcpt=address,
                reply=result.reply.code,
                reason=result.reason,
            )
            return _reply(result.reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return _reply(replies.RECIPIENT_OK)

    async def handle_DATA(
        self, server: MailspecSMTP, session: AioSession, envelope: Envelope
    ) -> str:
        s = self._session(server, session)
        raw = envelope.original_content or b""
        sender = envelope.mail_from or ""
        rcpts = list(envelope.rcpt_tos)
        result = await self.listener.policy.data(s, sender, rcpts, raw)
        if result.refuses and result.reply:
            event(
                log,
                "data.refused",
                peer=s.peer,
                sender=sender,
                reply=result.reply.code,
                reason=result.reason,
            )
            return _reply(result.reply)
        spool = self.listener.spool
        qid = spool.new_qid()
        data = self._received(s, qid, rcpts) + raw
        try:
            await spool.enqueue(
                sender, rcpts, data, qid=qid, meta={"role": s.role, "peer": s.peer, "user": s.user}
            )
        except SpoolError as e:
            event(log, "spool.error", level=logging.ERROR, qid=qid, error=str(e))
            return _reply(replies.SPOOL_FULL)
        event(
            log,
            "queued",
            qid=qid,
            role=s.role,
            peer=s.peer,
            user=s.user,
            sender=sender,
            rcpts=len(rcpts),
            size=len(data),
            tls=s.tls,
        )
        if self.listener.on_queued:
            self.listener.on_queued(qid)
        return _reply(replies.QUEUED.with_text(f"Ok: queued as {qid}"))

    def _received(self, s: Session, qid: str, rcpts: list[str]) -> bytes:
        # RFC 5321 4.4: the trace header; "with" per RFC 3848 (ESMTP, ESMTPS, ESMTPSA…).
        proto = "ESMTP" + ("S" if s.tls else "") + ("A" if s.user else "")
        helo = s.helo or "unknown"
        date = email.utils.formatdate(self.listener.clock.now(), localtime=False)
        for_part = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
        line = (
            f"Received: from {helo} ([{s.peer}])\r\n\tby {self.listener.hostname} (mailspec) "
            f"with {proto} id {qid}{for_part};\r\n\t{date}\r\n"
        )
        return line.encode("utf-8", "surrogateescape")


AsyncFn = Callable[[], Awaitable[None]]
