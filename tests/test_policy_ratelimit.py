"""Rate-limit parsing and the check's choice of limits (counting itself: test_state.py)."""

from __future__ import annotations

import pytest

from reference.clock import ManualClock
from reference.policy import Action, Session, transaction
from reference.policy.ratelimit import RateLimit
from reference.state.memory import MemoryStore
from reference.values import Limit, Limits, parse_limit, parse_overrides

ALICE = Session(role="submission", peer="127.0.0.1", user="alice@example.test")


def test_parse_limit() -> None:
    assert parse_limit("60/5m") == Limit(60, 300)
    assert parse_limit("") is None
    assert str(Limit(60, 300)) == "60 per 5 minutes"
    with pytest.raises(ValueError):
        parse_limit("sixty")


def test_overrides_pick_the_most_specific() -> None:
    o = parse_overrides(["alice@example.test: recipients=500/5m", "example.test: messages=2/1h"])
    rl = RateLimit(MemoryStore(), ManualClock(), Limits(Limit(60, 300)), o)
    assert rl.limits_for("alice@example.test").recipients == Limit(500, 300)
    assert rl.limits_for("bob@example.test").messages == Limit(2, 3600)
    assert rl.limits_for("carol@other.test").recipients == Limit(60, 300)
    with pytest.raises(ValueError):
        parse_overrides(["nobody recipients=1/1m"])


async def test_over_the_limit_says_when_and_only_for_submission() -> None:
    clock = ManualClock()
    rl = RateLimit(MemoryStore(), clock, Limits(recipients=Limit(2, 300)))
    for _ in range(2):
        assert (
            await rl.rcpt(transaction(ALICE, "alice@example.test"), "x@y.test")
        ).action is Action.CONTINUE
    r = await rl.rcpt(transaction(ALICE, "alice@example.test"), "x@y.test")
    assert r.action is Action.TEMPFAIL and r.reply is not None
    assert (r.reply.code, r.reply.enhanced) == (450, "4.7.1")
    assert "try again after" in r.reply.text and "(in 300 s)" in r.reply.text
    mx = Session(role="mx", peer="203.0.113.1")
    assert (
        await rl.rcpt(transaction(mx, "a@b.test"), "alice@example.test")
    ).action is Action.CONTINUE


async def test_a_message_larger_than_the_byte_limit_is_refused_for_good() -> None:
    rl = RateLimit(MemoryStore(), ManualClock(), Limits(bytes=Limit(1000, 3600)))
    r = await rl.data(transaction(ALICE, "alice@example.test", ["x@y.test"], b"x" * 2000))
    assert r.action is Action.REJECT and r.reply is not None and r.reply.code == 552
