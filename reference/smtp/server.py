"""The MX and submission listeners: a port, its connection limits, and a session per client.

The session itself (its command loop, the transaction, AUTH) is in ``session``; this module
only accepts connections, hands each to a session, and ends the session when the client
goes. Each SMTP stage is a call of the policy and each answer a reply: no policy logic here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Sequence

from reference.clock import Clock
from reference.credentials import Authenticator
from reference.mail import replies
from reference.mail.replies import Reply
from reference.metrics import ListenerMetrics
from reference.policy import Policy
from reference.smtp.authlimit import AuthLimiter
from reference.smtp.core import READ_LIMIT
from reference.smtp.session import SmtpSession
from reference.spool import QueueEntry, Spool
from reference.usage import UsageStore
from reference.values import network

__all__ = ["Listener", "OnQueued"]

# A message was queued (its entry and data) under this process's claim: deliver it.
OnQueued = Callable[[QueueEntry, bytes], None]


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
        usage: UsageStore | None = None,
        flow_backlog: int = 0,
        flow_delay: float = 0.0,
        flow_lag: float = 0.0,
    ) -> None:
        self.role = role
        # What authenticated users send is counted in their usage at the 250.
        self.usage = usage
        self.hostname = hostname
        self.policy = policy
        self.spool = spool
        self.clock = clock
        self.auth = auth
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        # Implicit TLS: TLS comes from the listening socket, not from STARTTLS.
        self.starttls_context = None if implicit_tls else tls_context
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.timeout = timeout
        self.on_queued = on_queued
        # Networks whose connections may open with a PROXY v1 line (listen.mx_proxy_from):
        # a load balancer's, or a test's speaking for another client address.
        self.proxy_from = [network(n) for n in proxy_from]
        self.sessions: set[SmtpSession] = set()
        # Connection limits (per node and listener, like Postfix's anvil).
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.active = 0
        self.per_client: Counter[str] = Counter()
        # Failed logins: counted, slowed, locked out (None: unlimited, for tests).
        self.auth_limiter = auth_limiter
        # Connections and replies, counted for /metrics (None: not counted).
        self.metrics = metrics
        # Flow control (smtp.flow_backlog, smtp.flow_lag, smtp.flow_delay): while this
        # process's delivery is that far behind its acceptance, the reply to MAIL waits a
        # while for it to catch up.
        self.flow_backlog = flow_backlog
        self.flow_delay = flow_delay
        self.flow_lag = flow_lag

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

    async def start(
        self, host: str, port: int, sock: socket.socket | None = None
    ) -> asyncio.Server:
        """Listen on ``host:port``, or on ``sock`` (bound by the supervisor of several workers)."""
        ssl_ctx = self.tls_context if self.implicit_tls else None

        def factory() -> _Connection:
            return _Connection(self)

        loop = asyncio.get_running_loop()
        if sock is not None:
            return await loop.create_server(factory, sock=sock, ssl=ssl_ctx)
        return await loop.create_server(factory, host, port, ssl=ssl_ctx, reuse_address=True)


class _Connection(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol for one client, which also ends the client's session when
    the client goes: at the end of its stream (it hung up), or when the connection is lost.

    The session's task is cancelled then even in the middle of a check, so a client that
    hangs up costs nothing more; its unanswered commands are not run.
    """

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._task: asyncio.Task[None] | None = None
        super().__init__(asyncio.StreamReader(limit=READ_LIMIT), self._connected)

    def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = SmtpSession(self._listener, reader, writer)
        self._task = asyncio.get_running_loop().create_task(session.run())

    def eof_received(self) -> bool:
        self._end()
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._end()

    def _end(self) -> None:
        if self._task is not None:
            self._task.cancel()
