"""Outbound rate limits: recipients, messages and bytes per user in sliding windows."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reference.clock import Clock
from reference.config import parse_duration
from reference.policy import CONTINUE, Check, CheckResult, Session, refuse
from reference.smtp.replies import Reply
from reference.state import StateStore

__all__ = ["Limit", "Limits", "RateLimit", "parse_limit", "parse_overrides"]

_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class Limit:
    """``count`` units per ``window`` seconds."""

    count: int
    window: float

    def __str__(self) -> str:
        w = self.window
        unit = f"{w / 60:g} minutes" if w % 60 == 0 and w < 3600 else f"{w / 3600:g} hours"
        return f"{self.count} per {unit}" if w >= 60 else f"{self.count} per {w:g} seconds"


def parse_overrides(specs: Sequence[str]) -> dict[str, Limits]:
    """['alice@example.test: recipients=100/5m, bytes=50000000/1d', 'example.test: …']."""
    out: dict[str, Limits] = {}
    for spec in specs:
        who, sep, rest = spec.partition(":")
        if not sep or not who.strip():
            raise ValueError(f"expected 'ADDRESS-OR-DOMAIN: kind=COUNT/DURATION, …': {spec!r}")
        values: dict[str, Limit | None] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            kind, eq, limit = part.partition("=")
            if not eq or kind.strip() not in ("recipients", "messages", "bytes"):
                raise ValueError(f"expected recipients=, messages= or bytes=: {part!r}")
            values[kind.strip()] = parse_limit(limit)
        out[who.strip().lower()] = Limits(**values)
    return out


def parse_limit(text: str) -> Limit | None:
    """'60/5m' -> Limit(60, 300); '' or 'none' -> None (unlimited)."""
    if text.strip().lower() in ("", "none", "unlimited"):
        return None
    m = _LIMIT.match(text)
    if not m:
        raise ValueError(f"not a limit: {text!r} (use COUNT/DURATION, e.g. 60/5m)")
    return Limit(int(m.group(1)), parse_duration(m.group(2)))


@dataclass(frozen=True)
class Limits:
    recipients: Limit | None = None
    messages: Limit | None = None
    bytes: Limit | None = None


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
    ) -> None:
        self.store = store
        self.clock = clock
        self.default = default
        self.overrides = dict(overrides or {})

    def limits_for(self, user: str) -> Limits:
        domain = user.rpartition("@")[2]
        return self.overrides.get(user) or self.overrides.get(domain) or self.default

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
                Reply(552, "5.3.4", f"Over the rate limit of {limit} {kind}"),
                f"{user} {kind} {amount} > {limit.count}",
            )
        when = email.utils.formatdate(r.retry_at, usegmt=True)
        wait = max(1, int(r.retry_at - now + 0.999))
        text = f"Rate limit reached: {limit} {kind}; try again after {when} (in {wait} s)"
        return refuse(Reply(450, "4.7.1", text), f"{user} {kind} {r.used}/{limit.count}")

    async def mail(self, s: Session, sender: str) -> CheckResult:
        if s.role != "submission" or s.user is None:
            return CONTINUE
        return await self._count("messages", s.user, self.limits_for(s.user).messages, 1)

    async def rcpt(self, s: Session, sender: str, rcpt: str) -> CheckResult:
        if s.role != "submission" or s.user is None:
            return CONTINUE
        return await self._count("recipients", s.user, self.limits_for(s.user).recipients, 1)

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        if s.role != "submission" or s.user is None:
            return CONTINUE
        return await self._count("bytes", s.user, self.limits_for(s.user).bytes, len(msg))
