"""The fake DNS server over the wire, through dnspython as the platform's resolver uses it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import pytest

from fakes.dns import FakeDNS, ZoneError
from reference.clock import ManualClock

pytest_plugins = ["fakes.dns.fixtures"]


def resolver(fake: FakeDNS, lifetime: float = 1.0) -> dns.asyncresolver.Resolver:
    return fake.resolver(lifetime)


async def texts(fake: FakeDNS, name: str, rtype: str, lifetime: float = 1.0) -> list[str]:
    return sorted(rd.to_text() for rd in await resolver(fake, lifetime).resolve(name, rtype))


async def ask(fake: FakeDNS, name: str, rtype: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await send(query, fake.host, timeout=1.0, port=fake.port)


async def test_common_types(fake_dns: FakeDNS) -> None:
    fake_dns.add("example.test", "MX", "10 mx1.example.test")
    fake_dns.add("example.test", "MX", "20 mx2.example.test")
    fake_dns.add("mx1.example.test", "A", "192.0.2.1")
    fake_dns.add("mx1.example.test", "AAAA", "2001:db8::1")
    fake_dns.add("_25._tcp.mx1.example.test", "TLSA", "3 1 1 " + "ab" * 32)
    fake_dns.add("_submission._tcp.example.test", "SRV", "0 1 587 mx1.example.test")
    fake_dns.add("example.test", "NS", "ns1.example.test")
    fake_dns.ptr("192.0.2.1", "mx1.example.test")
    fake_dns.ptr("2001:db8::1", "mx1.example.test")

    assert await texts(fake_dns, "EXAMPLE.test", "MX") == [
        "10 mx1.example.test.",
        "20 mx2.example.test.",
    ]
    assert await texts(fake_dns, "mx1.example.test", "A") == ["192.0.2.1"]
    assert await texts(fake_dns, "mx1.example.test", "AAAA") == ["2001:db8::1"]
    assert await texts(fake_dns, "_25._tcp.mx1.example.test", "TLSA") == ["3 1 1 " + "ab" * 32]
    assert await texts(fake_dns, "_submission._tcp.example.test", "SRV") == [
        "0 1 587 mx1.example.test."
    ]
    assert await texts(fake_dns, "example.test", "NS") == ["ns1.example.test."]
    assert await texts(fake_dns, "1.2.0.192.in-addr.arpa", "PTR") == ["mx1.example.test."]
    v6 = dns.reversename.from_address("2001:db8::1").to_text()
    assert await texts(fake_dns, v6, "PTR") == ["mx1.example.test."]


async def test_txt_strings_are_binary_safe(fake_dns: FakeDNS) -> None:
    fake_dns.add("spf.example.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")  # one value
    fake_dns.add("multi.example.test", "TXT", '"part one " "part two"')
    fake_dns.add_txt("bin.example.test", b'\x00"\\\xff;', "é")
    answer = await resolver(fake_dns).resolve("spf.example.test", "TXT")
    assert [rd.strings for rd in answer] == [(b"v=spf1 ip4:192.0.2.0/24 -all",)]
    answer = await resolver(fake_dns).resolve("multi.example.test", "TXT")
    assert [rd.strings for rd in answer] == [(b"part one ", b"part two")]
    answer = await resolver(fake_dns).resolve("bin.example.test", "TXT")
    assert [rd.strings for rd in answer] == [(b'\x00"\\\xff;', "é".encode())]


async def test_large_txt_is_truncated_over_udp_and_complete_over_tcp(fake_dns: FakeDNS) -> None:
    key = "v=DKIM1; k=rsa; p=" + "A" * 1500
    fake_dns.dkim("example.test", "big", key)
    answer = await resolver(fake_dns).resolve("big._domainkey.example.test", "TXT")
    strings = answer[0].strings
    assert b"".join(strings) == key.encode() and max(map(len, strings)) == 255
    log = [(q.transport, q.truncated) for q in fake_dns.queries]
    assert log == [("udp", True), ("tcp", False)]

    short = await ask(fake_dns, "big._domainkey.example.test", "TXT")
    assert short.flags & dns.flags.TC and short.question and not short.answer

    # A client announcing a larger EDNS0 buffer gets it all over UDP (RFC 6891 6.2.5).
    edns = dns.message.make_query("big._domainkey.example.test", "TXT", use_edns=0, payload=4096)
    reply = await dns.asyncquery.udp(edns, fake_dns.host, timeout=1.0, port=fake_dns.port)
    assert not reply.flags & dns.flags.TC and reply.answer and reply.edns == 0


async def test_cname_chains_are_followed(fake_dns: FakeDNS) -> None:
    fake_dns.add("www.example.test", "CNAME", "web.example.test")
    fake_dns.add("web.example.test", "CNAME", "host.example.test")
    fake_dns.add("host.example.test", "A", "192.0.2.7")
    fake_dns.add("dangling.example.test", "CNAME", "gone.example.test")
    fake_dns.add("loop1.example.test", "CNAME", "loop2.example.test")
    fake_dns.add("loop2.example.test", "CNAME", "loop1.example.test")

    answer = await resolver(fake_dns).resolve("www.example.test", "A")
    assert [a.to_text() for a in answer] == ["192.0.2.7"]
    assert answer.canonical_name.to_text() == "host.example.test."
    assert await texts(fake_dns, "www.example.test", "CNAME") == ["web.example.test."]

    reply = await ask(fake_dns, "dangling.example.test", "A")  # RFC 6604: rcode of the last name
    assert reply.rcode() == dns.rcode.NXDOMAIN and len(reply.answer) == 1
    reply = await ask(fake_dns, "loop1.example.test", "A")
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 2


async def test_wildcards(fake_dns: FakeDNS) -> None:
    fake_dns.load_zone(
        """
        $ORIGIN example.test.
        *           MX  10 catchall.example.test.
        *.sub       A   192.0.2.9
        host.sub    A   192.0.2.1
        a.b.sub     TXT "deep"
        """
    )
    assert await texts(fake_dns, "x.y.sub.example.test", "A") == ["192.0.2.9"]
    answer = await resolver(fake_dns).resolve("anything.example.test", "MX")
    assert answer.rrset is not None and answer.rrset.name.to_text() == "anything.example.test."
    assert await texts(fake_dns, "host.sub.example.test", "A") == ["192.0.2.1"]
    with pytest.raises(dns.resolver.NoAnswer):  # an existing name is never wildcard-matched
        await resolver(fake_dns).resolve("host.sub.example.test", "MX")
    with pytest.raises(dns.resolver.NoAnswer):  # b.sub is an empty non-terminal: it exists
        await resolver(fake_dns).resolve("b.sub.example.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):  # the wildcard has no TXT
        await resolver(fake_dns).resolve("x.sub.example.test", "TXT")
    with pytest.raises(dns.resolver.NXDOMAIN):  # below b.sub, only *.b.sub could match
        await resolver(fake_dns).resolve("c.b.sub.example.test", "A")


async def test_nxdomain_and_nodata_carry_the_soa(fake_dns: FakeDNS) -> None:
    fake_dns.load_zone(
        "@ 3600 SOA ns hostmaster 1 3600 600 86400 120\n@ A 192.0.2.1", origin="zone.test"
    )
    fake_dns.add("loose.test", "A", "192.0.2.2")
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver(fake_dns).resolve("missing.zone.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver(fake_dns).resolve("zone.test", "MX")

    reply = await ask(fake_dns, "missing.zone.test", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    soa = reply.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "zone.test."
    assert soa.ttl == 120  # RFC 2308 3: min(SOA TTL, SOA minimum)
    reply = await ask(fake_dns, "zone.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
    reply = await ask(fake_dns, "loose.test", "MX")  # no zone loaded: a made-up SOA, TTL 0
    assert reply.authority[0].name.to_text() == "loose.test." and reply.authority[0].ttl == 0
    assert reply.flags & dns.flags.AA


async def test_injected_failures(fake_dns: FakeDNS) -> None:
    fake_dns.add("broken.test", "A", "192.0.2.1")
    fake_dns.add("broken.test", "MX", "10 mx.broken.test")
    fake_dns.fail("broken.test", "A")
    fake_dns.fail("refused.test", mode="refused")
    fake_dns.fail("*.dnsbl.test", mode="timeout")

    with pytest.raises(dns.resolver.NoNameservers):
        await resolver(fake_dns).resolve("broken.test", "A")
    assert await texts(fake_dns, "broken.test", "MX") == ["10 mx.broken.test."]  # type-specific
    assert (await ask(fake_dns, "refused.test", "TXT")).rcode() == dns.rcode.REFUSED

    started = time.monotonic()
    with pytest.raises(dns.resolver.LifetimeTimeout):
        await resolver(fake_dns, lifetime=0.3).resolve("2.0.0.127.dnsbl.test", "A")
    assert time.monotonic() - started < 1.5
    assert [q.rcode for q in fake_dns.queries][-1] == "DROPPED"

    fake_dns.heal("broken.test")
    assert await texts(fake_dns, "broken.test", "A") == ["192.0.2.1"]
    fake_dns.heal()
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver(fake_dns).resolve("2.0.0.127.dnsbl.test", "A")
    with pytest.raises(ValueError, match="unknown failure mode"):
        fake_dns.fail("x.test", mode="explode")


async def test_truncate_mode_sends_clients_to_tcp(fake_dns: FakeDNS) -> None:
    fake_dns.add("small.test", "A", "192.0.2.1")
    fake_dns.fail("small.test", "A", mode="truncate")
    assert await texts(fake_dns, "small.test", "A") == ["192.0.2.1"]
    assert [(q.transport, q.truncated) for q in fake_dns.queries] == [("udp", True), ("tcp", False)]


async def test_slow_answers(fake_dns: FakeDNS) -> None:
    fake_dns.add("slow.test", "A", "192.0.2.1")
    fake_dns.add("fast.test", "A", "192.0.2.2")
    fake_dns.fail("slow.test", mode="slow", delay=0.3)
    started = time.monotonic()
    slow = asyncio.create_task(texts(fake_dns, "slow.test", "A"))
    assert await texts(fake_dns, "fast.test", "A") == ["192.0.2.2"]  # not held up
    assert time.monotonic() - started < 0.25
    assert await slow == ["192.0.2.1"]
    assert time.monotonic() - started >= 0.3
    with pytest.raises(dns.resolver.LifetimeTimeout):
        await resolver(fake_dns, lifetime=0.1).resolve("slow.test", "A")
    with pytest.raises(ValueError):
        fake_dns.fail("slow.test", mode="slow")


async def test_query_log_says_who_asked_what() -> None:
    clock = ManualClock()
    with FakeDNS(clock=clock) as fake:
        fake.add("mx.example.test", "A", "192.0.2.1")
        await texts(fake, "MX.Example.Test.", "A")
        clock.advance(60)
        with pytest.raises(dns.resolver.NXDOMAIN):
            await resolver(fake).resolve("nope.example.test", "TXT")
        await ask(fake, "mx.example.test", "AAAA", tcp=True)
        first, second, third = fake.queries
        assert (first.name, first.rtype, first.transport, first.rcode) == (
            "mx.example.test",
            "A",
            "udp",
            "NOERROR",
        )
        assert first.client[0] == "127.0.0.1" and first.client[1] > 0
        assert first.time == clock.now() - 60 and second.time == clock.now()
        assert (second.name, second.rtype, second.rcode) == ("nope.example.test", "TXT", "NXDOMAIN")
        assert (third.transport, third.rcode) == ("tcp", "NOERROR")
        fake.clear_log()
        assert fake.queries == []


async def test_records_change_while_running(fake_dns: FakeDNS) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver(fake_dns).resolve("late.example.test", "A")
    await asyncio.to_thread(fake_dns.add, "late.example.test", "A", "192.0.2.5")  # another thread
    assert await texts(fake_dns, "late.example.test", "A") == ["192.0.2.5"]
    fake_dns.add("late.example.test", "A", "192.0.2.5", ttl=60)  # same data: one record
    assert len(fake_dns.records()) == 1 and fake_dns.records()[0].ttl == 60
    fake_dns.remove("late.example.test", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver(fake_dns).resolve("late.example.test", "A")


async def test_mail_policy_helpers(fake_dns: FakeDNS) -> None:
    fake_dns.add("example.test", "TXT", "google-site-verification=abc")
    fake_dns.spf("example.test", "v=spf1 -all")
    fake_dns.spf("example.test", "v=spf1 ip4:192.0.2.0/24 -all")  # replaces the SPF record only
    fake_dns.dmarc("example.test", "v=DMARC1; p=reject")
    fake_dns.mta_sts("example.test", "20240101")
    fake_dns.tlsrpt("example.test", "mailto:tls@example.test")
    assert await texts(fake_dns, "example.test", "TXT") == [
        '"google-site-verification=abc"',
        '"v=spf1 ip4:192.0.2.0/24 -all"',
    ]
    assert await texts(fake_dns, "_dmarc.example.test", "TXT") == ['"v=DMARC1; p=reject"']
    assert await texts(fake_dns, "_mta-sts.example.test", "TXT") == ['"v=STSv1; id=20240101"']
    assert await texts(fake_dns, "_smtp._tls.example.test", "TXT") == [
        '"v=TLSRPTv1; rua=mailto:tls@example.test"'
    ]


async def test_blocklists(fake_dns: FakeDNS) -> None:
    zen = fake_dns.blocklist("zen.dnsbl.test")
    zen.list("192.0.2.99", txt="listed: see https://dnsbl.test/192.0.2.99")
    zen.list("192.0.2.99", code="127.0.0.4")
    zen.list("2001:db8::99")
    dbl = fake_dns.blocklist("dbl.dnsbl.test")
    dbl.list_name("phish.example", code="127.0.1.2")

    assert await texts(fake_dns, "99.2.0.192.zen.dnsbl.test", "A") == ["127.0.0.2", "127.0.0.4"]
    assert await texts(fake_dns, "99.2.0.192.zen.dnsbl.test", "TXT") == [
        '"listed: see https://dnsbl.test/192.0.2.99"'
    ]
    v6 = zen.name_for("2001:db8::99")
    assert v6 == "9.9.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.zen.dnsbl.test"
    assert await texts(fake_dns, v6, "A") == ["127.0.0.2"]
    assert await texts(fake_dns, "phish.example.dbl.dnsbl.test", "A") == ["127.0.1.2"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver(fake_dns).resolve("1.2.0.192.zen.dnsbl.test", "A")

    zen.unlist("192.0.2.99")
    dbl.unlist_name("phish.example")
    for name in ("99.2.0.192.zen.dnsbl.test", "phish.example.dbl.dnsbl.test"):
        with pytest.raises(dns.resolver.NXDOMAIN):
            await resolver(fake_dns).resolve(name, "A")


async def test_several_queries_on_one_tcp_connection(fake_dns: FakeDNS) -> None:
    fake_dns.add("a.test", "A", "192.0.2.1")
    fake_dns.add("b.test", "A", "192.0.2.2")
    reader, writer = await asyncio.open_connection(fake_dns.host, fake_dns.port)
    try:
        for name in ("a.test", "b.test"):
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        answers = []
        for _ in range(2):
            size = int.from_bytes(await reader.readexactly(2), "big")
            answers.append(dns.message.from_wire(await reader.readexactly(size)))
    finally:
        writer.close()
    assert [a.answer[0][0].to_text() for a in answers] == ["192.0.2.1", "192.0.2.2"]


async def test_malformed_packets(fake_dns: FakeDNS) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect((fake_dns.host, fake_dns.port))
        await loop.sock_sendall(s, b"\x12\x34" + b"\xff" * 20)
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(s, 512), 1.0))
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    assert fake_dns.queries[-1].rcode == "FORMERR"


async def test_load_zone_file(fake_dns: FakeDNS, tmp_path: Path) -> None:
    good = tmp_path / "example.zone"
    good.write_text("$ORIGIN example.test.\n@ MX 10 mx\nmx A 192.0.2.1\n")
    fake_dns.load_zone_file(good)
    assert await texts(fake_dns, "example.test", "MX") == ["10 mx.example.test."]
    bad = tmp_path / "bad.zone"
    bad.write_text("ok A 192.0.2.1\nbroken A nope\n")
    with pytest.raises(ZoneError, match=r"bad\.zone: line 2: "):
        fake_dns.load_zone_file(bad, origin="example.test")
    assert {r.name for r in fake_dns.records()} == {"example.test", "mx.example.test"}  # atomic


def test_sync_use_and_the_same_port_for_udp_and_tcp(fake_dns: FakeDNS) -> None:
    fake_dns.add("sync.test", "A", "192.0.2.1")
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port, r.lifetime = [fake_dns.host], fake_dns.port, 1.0
    assert [a.to_text() for a in r.resolve("sync.test", "A")] == ["192.0.2.1"]
    assert [a.to_text() for a in r.resolve("sync.test", "A", tcp=True)] == ["192.0.2.1"]
    assert fake_dns.nameserver == f"127.0.0.1:{fake_dns.port}"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_stop_leaks_no_thread_or_socket() -> None:
    threads, fds = threading.active_count(), open_fds()
    fake = FakeDNS().start()
    fake.add("x.test", "A", "192.0.2.1")
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port, r.lifetime = [fake.host], fake.port, 1.0
    r.resolve("x.test", "A")
    r.resolve("x.test", "A", tcp=True)
    # An idle TCP client that never closes must not keep the server (or its thread) alive.
    idle = socket.create_connection((fake.host, fake.port))
    fake.stop()
    fake.stop()  # twice is fine
    idle.close()
    assert threading.active_count() == threads
    assert open_fds() == fds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((fake.host, fake.port))  # the port is really free again


def test_a_port_in_use_is_an_oserror_and_free_again_after_stop() -> None:
    with FakeDNS() as one, pytest.raises(OSError):
        FakeDNS(port=one.port).start()
    with FakeDNS(port=one.port) as again:
        assert again.port == one.port


async def test_concurrent_queries_while_another_thread_writes(fake_dns: FakeDNS) -> None:
    fake_dns.add("busy.test", "A", "192.0.2.1")
    stop = threading.Event()
    writes: list[int] = []

    def churn() -> None:
        # A short wait each round: a tight loop would only measure GIL contention.
        while not stop.wait(0.0001):
            i = len(writes)
            fake_dns.add(f"n{i % 50}.churn.test", "TXT", f"value {i}")
            fake_dns.remove(f"n{(i + 25) % 50}.churn.test")
            writes.append(i)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        # Correctness under concurrency, not speed: 200 queries answered one after another by
        # a server sharing the GIL with the writer may take seconds on a busy machine (a 1 s
        # lifetime timed out with two other test runs on the two cores).
        burst = (texts(fake_dns, "busy.test", "A", lifetime=20.0) for _ in range(200))
        answers = await asyncio.gather(*burst)
    finally:
        stop.set()
        writer.join()
    assert answers == [["192.0.2.1"]] * 200
    assert writes  # the data really changed during the burst
    assert len([q for q in fake_dns.queries if q.name == "busy.test"]) == 200


def test_bad_records_are_refused_with_the_reason(fake_dns: FakeDNS) -> None:
    with pytest.raises(ValueError, match=r"^MX example\.test: "):
        fake_dns.add("example.test", "MX", "mx.example.test")
    with pytest.raises(ValueError, match="unsupported record type"):
        fake_dns.add("example.test", "HINFO", "a b")
    with pytest.raises(ValueError, match="empty label"):
        fake_dns.add("a..test", "A", "192.0.2.1")
    assert fake_dns.records() == []


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_listener() -> None:
    with FakeDNS(host="::1") as fake:
        fake.add("v6.test", "AAAA", "2001:db8::6")
        assert fake.nameserver == f"[::1]:{fake.port}"
        assert await texts(fake, "v6.test", "AAAA") == ["2001:db8::6"]
        assert fake.queries[0].client[0] == "::1"
