"""DNSBL lookups through the fake DNS: listed clients refused naming the list, failures open."""

from __future__ import annotations

import dns.resolver

from fakes.dns import FakeDNS
from reference.clock import ManualClock
from reference.policy import Action, Session, transaction
from reference.policy.dnsbl import BlocklistZone, Dnsbl, reverse_name


def test_reverse_names() -> None:
    assert reverse_name("203.0.113.7", "zen.test") == "7.113.0.203.zen.test"
    assert reverse_name("2001:db8::1", "bl.test").startswith("1.0.0.0.0.0.0.0.")
    assert reverse_name("2001:db8::1", "bl.test").endswith(".8.b.d.0.1.0.0.2.bl.test")


async def test_listed_client_is_refused_naming_the_list(dns_server: FakeDNS) -> None:
    dns_server.blocklist("zen.spamhaus.test").list("203.0.113.7", "127.0.0.2", txt="see example")
    check = Dnsbl(
        dns_server.resolver(1.0), [BlocklistZone("zen.spamhaus.test", {"127.0.0.2": 10.0})]
    )
    r = await check.rcpt(
        transaction(Session(role="mx", peer="203.0.113.7"), "a@b.test"), "c@d.test"
    )
    assert r.action is Action.REJECT
    assert r.reply is not None and (r.reply.code, r.reply.enhanced) == (554, "5.7.1")
    assert "zen.spamhaus.test" in r.reply.text and "see example" in r.reply.text
    clean = await check.rcpt(
        transaction(Session(role="mx", peer="203.0.113.8"), "a@b.test"), "c@d.test"
    )
    assert clean.action is Action.CONTINUE


async def test_light_listing_only_scores(dns_server: FakeDNS) -> None:
    dns_server.blocklist("pbl.test").list("203.0.113.9", "127.0.0.10")
    check = Dnsbl(dns_server.resolver(1.0), [BlocklistZone("pbl.test", {"127.0.0.10": 3.0})])
    s = Session(role="mx", peer="203.0.113.9")
    assert (await check.rcpt(transaction(s, "a@b.test"), "c@d.test")).action is Action.CONTINUE
    assert (await check.score("203.0.113.9"))[0] == 3.0


async def test_dns_failure_never_refuses(dns_server: FakeDNS) -> None:
    dns_server.fail(reverse_name("203.0.113.7", "zen.test"), mode="servfail")
    check = Dnsbl(dns_server.resolver(1.0), [BlocklistZone("zen.test", {})])
    r = await check.rcpt(
        transaction(Session(role="mx", peer="203.0.113.7"), "a@b.test"), "c@d.test"
    )
    assert r.action is Action.CONTINUE


async def test_authenticated_users_are_not_checked(dns_server: FakeDNS) -> None:
    dns_server.blocklist("zen.test").list("203.0.113.7", "127.0.0.2")
    check = Dnsbl(dns_server.resolver(1.0), [BlocklistZone("zen.test", {})])
    s = Session(role="submission", peer="203.0.113.7", user="alice@example.test")
    assert (
        await check.rcpt(transaction(s, "alice@example.test"), "x@y.test")
    ).action is Action.CONTINUE


async def test_answers_are_kept_for_their_ttl_on_the_server_clock(dns_server: FakeDNS) -> None:
    # Each message asks at RCPT and again at DATA (the spam score): a caching resolver's
    # answers are kept by the check, for their TTL on the injected clock.
    dns_server.blocklist("zen.test").list("203.0.113.7", "127.0.0.2")
    resolver = dns_server.resolver(1.0)
    resolver.cache = dns.resolver.Cache()
    clock = ManualClock()
    check = Dnsbl(resolver, [BlocklistZone("zen.test", {"127.0.0.2": 3.0})], clock=clock)
    name = reverse_name("203.0.113.7", "zen.test")
    assert (await check.score("203.0.113.7"))[0] == 3.0
    resolver.cache.flush()  # only the check keeps it now
    for _ in range(2):
        assert (await check.score("203.0.113.7"))[0] == 3.0
    assert sum(1 for q in dns_server.queries if q.name == name) == 1
    clock.advance(3601)
    assert (await check.score("203.0.113.7"))[0] == 3.0
    assert sum(1 for q in dns_server.queries if q.name == name) == 2
