"""Failed logins: counted per account and per client, slowed on the clock, locked out."""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING

import pytest

from reference.clock import ManualClock
from reference.credentials import StaticAuthenticator, TemporarilyUnavailable
from reference.smtp.authlimit import AuthLimiter, LimitedAuthenticator
from reference.state.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import SmtpEnv, StartSmtp

ALICE, PW = "alice@example.test", "right-pw"


def limiter(clock: ManualClock, **kw: object) -> AuthLimiter:
    settings: dict[str, object] = {
        "max_failures": 5,
        "max_failures_per_client": 8,
        "window": 900.0,
        "lockout": 1800.0,
        "delay": 1.0,
        "delay_after": 2,
        "max_delay": 4.0,
        "ignore_networks": ["127.0.0.0/8"],
    }
    settings.update(kw)
    return AuthLimiter(MemoryStore(), clock, **settings)  # type: ignore[arg-type]


async def test_delay_grows_after_the_free_failures_and_is_capped() -> None:
    lim = limiter(ManualClock())
    delays = [await lim.failed("nobody@example.test", "192.0.2.1") for _ in range(4)]
    assert delays == [0.0, 0.0, 1.0, 2.0]
    assert [lim.delay_for(n) for n in range(1, 8)] == [0, 0, 1, 2, 4, 4, 4]
    assert limiter(ManualClock(), delay=0.0).delay_for(10) == 0.0


async def test_account_is_locked_after_max_failures_and_unlocked_on_the_clock() -> None:
    clock = ManualClock()
    lim = limiter(clock)
    for _ in range(4):
        await lim.failed(ALICE, "192.0.2.1")
        assert await lim.locked(ALICE, "192.0.2.99") is None
    await lim.failed("ALICE@example.test", "192.0.2.2")  # the name is counted case-blind
    locked = await lim.locked(ALICE, "198.51.100.1")  # from anywhere
    assert locked is not None and locked.scope == "account"
    assert locked.until == clock.now() + 1800
    clock.advance(1799)
    assert await lim.locked(ALICE) is not None
    clock.advance(1)
    assert await lim.locked(ALICE) is None
    # The count started again: one more failure does not lock.
    await lim.failed(ALICE, "192.0.2.1")
    assert await lim.locked(ALICE) is None


async def test_failures_outside_the_window_do_not_count() -> None:
    clock = ManualClock()
    lim = limiter(clock)
    for _ in range(4):
        await lim.failed(ALICE, "192.0.2.1")
    clock.advance(901)
    assert await lim.failed(ALICE, "192.0.2.1") == 0.0  # the first of a new window
    assert await lim.locked(ALICE) is None


async def test_client_is_locked_across_accounts() -> None:
    lim = limiter(ManualClock())
    for i in range(8):
        await lim.failed(f"user{i}@example.test", "203.0.113.9")
    locked = await lim.locked("someone-else@example.test", "203.0.113.9")
    assert locked is not None and locked.scope == "client"
    assert await lim.locked("someone-else@example.test", "203.0.113.10") is None


async def test_ipv6_clients_count_per_64_and_ignored_networks_not_at_all() -> None:
    lim = limiter(ManualClock())
    for i in range(8):
        await lim.failed(f"u{i}@example.test", f"2001:db8:1:2::{i + 1}")
    assert await lim.locked("x@example.test", "2001:db8:1:2:ffff::1") is not None
    assert await lim.locked("x@example.test", "2001:db8:1:3::1") is None
    for i in range(8):
        await lim.failed(f"v{i}@example.test", "127.0.0.1")
    assert await lim.locked("y@example.test", "127.0.0.1") is None


async def test_limited_authenticator_for_imap_and_pop3() -> None:
    clock = ManualClock()
    lim = limiter(clock)
    auth = LimitedAuthenticator(StaticAuthenticator({ALICE: PW}), lim, clock)
    assert await auth.authenticate(ALICE, PW) == ALICE
    for _ in range(2):
        assert await auth.authenticate(ALICE, "wrong") is None  # free: no sleep
    slow = asyncio.ensure_future(auth.authenticate(ALICE, "wrong"))
    await asyncio.sleep(0.05)
    assert not slow.done()  # waiting for the clock
    clock.advance(1)
    assert await asyncio.wait_for(slow, 2) is None
    for delay in (2, 4):
        slow = asyncio.ensure_future(auth.authenticate(ALICE, "wrong"))
        await asyncio.sleep(0.02)
        clock.advance(delay)
        assert await asyncio.wait_for(slow, 2) is None
    with pytest.raises(TemporarilyUnavailable):  # locked: the right password too
        await auth.authenticate(ALICE, PW)
    clock.advance(1800)
    assert await auth.authenticate(ALICE, PW) == ALICE


# -- over SMTP AUTH


def plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.fixture
async def env(smtp_listener: StartSmtp) -> SmtpEnv:
    clock = ManualClock()
    return await smtp_listener(
        "submission",
        tls_mode="implicit",
        clock=clock,
        auth=StaticAuthenticator({ALICE: PW}),
        # Nothing ignored: the test client on 127.0.0.1 is counted as a client address.
        auth_limiter=limiter(clock, ignore_networks=[]),
    )


async def test_smtp_failures_are_slowed_then_locked_with_454(env: SmtpEnv) -> None:
    c = await env.connect()
    for _ in range(2):
        assert (await c.cmd(plain(ALICE, "wrong"))).startswith("535 5.7.8")
    for delay in (1, 2, 4):
        await c.send_line(plain(ALICE, "wrong"))
        with pytest.raises(TimeoutError):
            await c.reply(wait=0.1)  # held back until the clock moves
        env.clock.advance(delay)
        assert (await c.reply()).startswith("535 5.7.8")
    # Five failures: locked, even with the right password, from a new connection too.
    assert (await c.cmd(plain(ALICE, PW))).startswith("454 4.7.0 Too many failed logins")
    c2 = await env.connect()
    assert (await c2.cmd(plain(ALICE, PW))).startswith("454 4.7.0")
    env.clock.advance(1800)  # (the idle sessions are closed by now)
    c3 = await env.connect()
    assert (await c3.cmd(plain(ALICE, PW))).startswith("235")


async def test_smtp_client_address_is_locked_across_accounts(env: SmtpEnv) -> None:
    c = await env.connect()
    for i in range(8):
        await c.send_line(plain(f"guess{i}@example.test", "x"))
        while True:  # let any delay pass (the client's count grows)
            try:
                reply = await c.reply(wait=0.1)
                break
            except TimeoutError:
                env.clock.advance(5)
        assert reply.startswith("535")
    # The client address is locked: even a right password from it is refused.
    assert (await c.cmd(plain(ALICE, PW))).startswith("454 4.7.0")
