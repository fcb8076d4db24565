"""Failed logins: counted per account and per client address, slowed, then locked out.

What Fail2ban does from the outside, and Dovecot's auth penalty from the inside: every
failed login is counted in a sliding window in the shared state store (so the count holds
across worker processes and, with Redis, across nodes), once per account name tried and
once per client address (an IPv6 client per /64, the block one host usually gets).

- The first ``delay_after`` failures (typos) are answered at once; each further one waits
  ``delay`` seconds, doubled per failure up to ``max_delay``, on the injected clock.
- At ``max_failures`` for an account (``max_failures_per_client`` for a client address)
  within ``window``, it is locked for ``lockout``: every login, even with the right
  password, is refused without the password being looked at, until the lock expires on
  the clock. The count starts again from zero afterwards.
- Client addresses in ``ignore_networks`` (loopback by default, like Fail2ban's
  ``ignoreip``: a webmail or proxy on the same host stands for many users) are not counted
  per address; the accounts they try still are.

The account counted is the name the client gave (lower-cased), whether or not it exists,
so a lockout says nothing about which accounts exist. A successful login does not clear
the count: guesses interleaved with the owner's own logins gain nothing.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from reference.clock import Clock
from reference.credentials import Authenticator, TemporarilyUnavailable
from reference.log import event
from reference.metrics import Metrics
from reference.state import StateStore
from reference.values import network

log = logging.getLogger("mailspec.authlimit")

__all__ = ["AuthLimiter", "LimitedAuthenticator", "Lockout"]

# window_add counts up to a limit; failures are always counted, so the limit is "never".
_UNBOUNDED = 1 << 30
_NAME_LIMIT = 320  # an address is at most 64 + 1 + 255 octets; longer names are cut


@dataclass(frozen=True)
class Lockout:
    """Why logins are refused now: ``scope`` is "account" or "client", until ``until``."""

    scope: str
    until: float


class AuthLimiter:
    """Counts failed logins and says when to slow down or lock out (see module doc)."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        *,
        max_failures: int = 10,
        max_failures_per_client: int = 30,
        window: float = 900.0,
        lockout: float = 1800.0,
        delay: float = 1.0,
        delay_after: int = 3,
        max_delay: float = 30.0,
        ignore_networks: Sequence[str] = ("127.0.0.0/8", "::1/128"),
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.max_failures = max_failures
        self.max_failures_per_client = max_failures_per_client
        self.window = window
        self.lockout = lockout
        self.delay = delay
        self.delay_after = delay_after
        self.max_delay = max_delay
        self.ignore = [network(n) for n in ignore_networks]

    # -- keys

    @staticmethod
    def _account_key(username: str) -> str:
        return "account:" + username.strip().lower()[:_NAME_LIMIT]

    def _client_key(self, peer: str) -> str | None:
        """The client's counter, or None when it is not counted (ignored, or unknown)."""
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return None
        if any(addr in n for n in self.ignore):
            return None
        if addr.version == 6:
            return f"client:{ipaddress.ip_network(f'{addr}/64', strict=False)}"
        return f"client:{addr}"

    def _scopes(self, username: str, peer: str) -> list[tuple[str, str, int]]:
        """(scope, key, threshold) for every counter a login attempt touches."""
        out = [("account", self._account_key(username), self.max_failures)]
        client = self._client_key(peer)
        if client is not None:
            out.append(("client", client, self.max_failures_per_client))
        return out

    # -- what the login paths ask

    async def locked(self, username: str, peer: str = "") -> Lockout | None:
        """The lockout in force for this account or client, if any."""
        now = self.clock.now()
        for scope, key, _ in self._scopes(username, peer):
            until = await self.store.get(f"auth:lock:{key}", now)
            if until is not None:
                return Lockout(scope, float(until))
        return None

    async def failed(self, username: str, peer: str = "", service: str = "smtp") -> float:
        """Count one failure; lock what reached its threshold; the delay to answer with."""
        now = self.clock.now()
        if self.metrics is not None:
            self.metrics.auth_failed(service)
        worst = 0
        for scope, key, threshold in self._scopes(username, peer):
            r = await self.store.window_add(f"auth:fail:{key}", now, self.window, 1, _UNBOUNDED)
            worst = max(worst, r.used)
            if r.used >= threshold:
                until = now + self.lockout
                await self.store.put(f"auth:lock:{key}", repr(until), until)
                await self.store.delete(f"auth:fail:{key}")
                if self.metrics is not None:
                    self.metrics.locked_out(scope)
                event(
                    log,
                    "auth.lockout",
                    level=logging.WARNING,
                    scope=scope,
                    key=key,
                    failures=r.used,
                    seconds=int(self.lockout),
                )
        return self.delay_for(worst)

    def delay_for(self, failures: int) -> float:
        """Seconds before the reply to the ``failures``-th failure in the window."""
        over = failures - self.delay_after
        if over <= 0 or self.delay <= 0:
            return 0.0
        return float(min(self.delay * 2 ** min(over - 1, 30), self.max_delay))


class LimitedAuthenticator:
    """An :class:`Authenticator` behind an :class:`AuthLimiter`, for IMAP and POP3.

    Their servers pass the client's address, so failures count per account and per client
    address, as SMTP AUTH's do. A locked account or address is refused without the password
    being checked (:class:`TemporarilyUnavailable`); a failure is answered after the
    limiter's delay.
    """

    def __init__(
        self, inner: Authenticator, limiter: AuthLimiter, clock: Clock, service: str = "imap"
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.clock = clock
        self.service = service  # what a failure is counted under in /metrics

    async def authenticate(self, username: str, password: str, *, client: str = "") -> str | None:
        locked = await self.limiter.locked(username, client)
        if locked is not None:
            event(log, "auth.locked", user=username[:_NAME_LIMIT], peer=client, scope=locked.scope)
            raise TemporarilyUnavailable(f"{locked.scope} locked after failed logins")
        address = await self.inner.authenticate(username, password, client=client)
        if address is None:
            delay = await self.limiter.failed(username, client, service=self.service)
            if delay > 0:
                await self.clock.sleep(delay)
        return address
