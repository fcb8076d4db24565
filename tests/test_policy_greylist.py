"""Greylisting on the injected clock: first attempt waits, retries pass, networks are trusted."""

from __future__ import annotations

import asyncio

from reference.clock import ManualClock
from reference.policy import Action, Session, SpfPair, Transaction, transaction
from reference.policy.greylist import Greylist, client_network
from reference.state.memory import MemoryStore

REMOTE = Session(role="mx", peer="203.0.113.7", helo="mta.remote.test")


def greylist(clock: ManualClock) -> Greylist:
    return Greylist(MemoryStore(), clock, bypass=["127.0.0.0/8"])


async def test_first_attempt_is_greylisted_then_passes_after_the_delay() -> None:
    clock = ManualClock()
    g = greylist(clock)
    r = await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    assert r.action is Action.TEMPFAIL
    assert r.reply is not None and (r.reply.code, r.reply.enhanced) == (451, "4.7.1")
    assert "300 seconds" in r.reply.text
    clock.advance(299)
    early = await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    assert early.action is Action.TEMPFAIL and "1 seconds" in early.reply.text  # type: ignore[union-attr]
    clock.advance(1)
    assert (
        await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    ).action is Action.CONTINUE


async def test_a_neighbour_in_the_same_24_retries_successfully() -> None:
    clock = ManualClock()
    g = greylist(clock)
    await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    clock.advance(600)
    neighbour = Session(role="mx", peer="203.0.113.200")
    assert (
        await g.rcpt(transaction(neighbour, "a@remote.test"), "bob@example.test")
    ).action is Action.CONTINUE


async def test_passing_network_is_trusted_for_36_days() -> None:
    clock = ManualClock()
    g = greylist(clock)
    await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    clock.advance(300)
    await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    # Another sender and recipient from that network: no wait now.
    assert (
        await g.rcpt(transaction(REMOTE, "x@remote.test"), "carol@example.test")
    ).action is Action.CONTINUE
    clock.advance(36 * 86400 + 1)
    assert (
        await g.rcpt(transaction(REMOTE, "y@remote.test"), "carol@example.test")
    ).action is Action.TEMPFAIL


async def test_retry_after_the_window_starts_over() -> None:
    clock = ManualClock()
    g = greylist(clock)
    await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    clock.advance(4 * 3600 + 301)
    assert (
        await g.rcpt(transaction(REMOTE, "a@remote.test"), "bob@example.test")
    ).action is Action.TEMPFAIL


async def test_bypasses() -> None:
    g = greylist(ManualClock())
    local = Session(role="mx", peer="127.0.0.1")
    authed = Session(role="submission", peer="203.0.113.7", user="alice@example.test")
    assert (
        await g.rcpt(transaction(local, "a@remote.test"), "bob@example.test")
    ).action is Action.CONTINUE
    assert (
        await g.rcpt(transaction(authed, "alice@example.test"), "x@y.test")
    ).action is Action.CONTINUE


def test_client_networks() -> None:
    assert client_network("203.0.113.77") == "203.0.113.0/24"
    assert client_network("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert client_network("not-an-ip") == "not-an-ip"


async def test_spf_whitelisted_domains_skip_greylisting() -> None:
    from reference.auth.spf import SpfCheck, SpfResult

    results = {"pass.example": SpfResult.PASS, "fail.example": SpfResult.FAIL}

    async def spf(sender: str) -> SpfPair:
        domain = sender.rpartition("@")[2]
        check = SpfCheck(results[domain], domain, "mailfrom", sender)
        return SpfPair(check, check)

    def at_rcpt(sender: str) -> Transaction:
        # What sender authentication leaves on the transaction at MAIL: its SPF task.
        tx = transaction(REMOTE, sender)
        tx.spf = asyncio.ensure_future(spf(sender))
        return tx

    g = Greylist(MemoryStore(), ManualClock(), spf_domains=["pass.example", "fail.example"])
    assert (await g.rcpt(at_rcpt("a@pass.example"), "b@example.test")).action is Action.CONTINUE
    assert (await g.rcpt(at_rcpt("a@fail.example"), "b@example.test")).action is Action.TEMPFAIL
    # No SPF started (no sender authentication in the chain): greylisted like anyone.
    assert (
        await g.rcpt(transaction(REMOTE, "a@pass.example"), "b@example.test")
    ).action is Action.TEMPFAIL
    other = Greylist(MemoryStore(), ManualClock(), spf_domains=["x.example"])
    assert (await other.rcpt(at_rcpt("a@pass.example"), "b@example.test")).action is Action.TEMPFAIL
