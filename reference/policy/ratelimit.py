"""Outbound rate limits: recipients, messages and bytes per user in sliding windows."""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping

from reference.clock import Clock
from reference.directory import ClassOfService
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse
from reference.state import StateStore
from reference.values import Limit, Limits

__all__ = ["RateLimit"]


class RateLimit(Check):
    """Submission only. Over a limit: ``450 4.7.1`` saying when to retry.

    Limits come from the most specific match: the user's address, then their domain, then
    the platform default. Counting is one atomic step in the shared state store, so
    concurrent sessions (and nodes sharing Redis) accept exactly the allowed number.
    """

    name = "ratelimit"

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        default: Limits,
        overrides: Mapping[str, Limits] | None = None,
        *,
        classes: Callable[[str], tuple[ClassOfService | None, str]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.default = default
        self.overrides = dict(overrides or {})
        self.classes = classes  # the user's class of service, whose limits come first

    def limits_for(self, user: str) -> Limits:
        domain = user.rpartition("@")[2]
        if user in self.overrides:
            return self.overrides[user]
        platform = self.overrides.get(domain) or self.default
        cos = self.classes(user)[0] if self.classes is not None else None
        # The class's limits where it sets them (account > domain > default class), else
        # the platform's for the domain.
        return platform if cos is None else cos.rate_limits(platform)

    async def _count(self, kind: str, user: str, limit: Limit | None, amount: int) -> CheckResult:
        if limit is None:
            return CONTINUE
        now = self.clock.now()
        r = await self.store.window_add(
            f"rate:{kind}:{user}", now, limit.window, amount, limit.count
        )
        if r.allowed:
            return CONTINUE
        if r.retry_at == float("inf"):
            # RFC 5321 4.5.3.1.10-style: this one request alone exceeds the limit.
            return refuse(
                replies.OVER_RATE_LIMIT.format(limit=limit, kind=kind),
                f"{user} {kind} {amount} > {limit.count}",
            )
        when = email.utils.formatdate(r.retry_at, usegmt=True)
        wait = max(1, int(r.retry_at - now + 0.999))
        return refuse(
            replies.RATE_LIMITED.format(limit=limit, kind=kind, when=when, wait=wait),
            f"{user} {kind} {r.used}/{limit.count}",
        )

    async def mail(self, tx: Transaction) -> CheckResult:
        if tx.role != "submission" or tx.user is None:
            return CONTINUE
        return await self._count("messages", tx.user, self.limits_for(tx.user).messages, 1)

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        if tx.role != "submission" or tx.user is None:
            return CONTINUE
        return await self._count("recipients", tx.user, self.limits_for(tx.user).recipients, 1)

    async def data(self, tx: Transaction) -> CheckResult:
        if tx.role != "submission" or tx.user is None:
            return CONTINUE
        return await self._count("bytes", tx.user, self.limits_for(tx.user).bytes, len(tx.msg.raw))
