"""Links: extraction from text and HTML, phishing signs, and URI blocklists in a real fake DNS."""

from __future__ import annotations

import dns.resolver
import pytest

from fakes.dns import FakeDNS
from reference.auth.lookup import Lookup
from reference.clock import ManualClock
from reference.scan import spam
from reference.scan.analysis import parse
from reference.scan.links import Link, extract_urls, host_of, lookalike_of
from reference.scan.rules import Hit, phishing
from reference.scan.spam import UriZone


def html(body: str, extra: str = "") -> bytes:
    return (
        "From: a@remote.example\r\nSubject: hi\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"{extra}\r\n<html><body>{body}</body></html>\r\n"
    ).encode()


def rules(raw: bytes) -> dict[str, str]:
    return {h.rule: h.detail for h in phishing(parse(raw))}


# -- extraction --------------------------------------------------------------------------------


def test_urls_in_text() -> None:
    text = (
        "See https://a.example/x?y=1, www.b.example. and (http://c.example/path) or ftp://d.example"
    )
    assert extract_urls(text) == [
        "https://a.example/x?y=1",
        "www.b.example",
        "http://c.example/path",
        "ftp://d.example",
    ]
    assert extract_urls("no links here, just a.b and example dot com") == []


def test_hosts() -> None:
    assert host_of("https://Login.Bank.Example./x") == "login.bank.example"
    assert host_of("www.bank.example/login") == "www.bank.example"
    assert host_of("http://bank.example@evil.test/") == "evil.test"  # userinfo trick
    assert host_of("http://[2001:db8::1]/") == "2001:db8::1"
    assert host_of("http://bücher.example/") == "xn--bcher-kva.example"
    assert host_of("mailto:a@b.example") == ""
    assert host_of("http://[broken/") == ""


def test_links_from_html_and_text_parts() -> None:
    raw = html(
        '<a href="https://a.example/1">Read <b>more</b></a> '
        "<a href='http://b.example/'>www.b.example</a> and see http://c.example/",
    )
    links = parse(raw).links
    assert Link("https://a.example/1", "a.example", "Read more", True) in links
    assert Link("http://b.example/", "b.example", "www.b.example", True) in links
    assert any(lk.host == "c.example" and not lk.anchor for lk in links)


def test_script_and_style_are_not_text() -> None:
    p = parse(html("<style>p{}</style><script>var x = 'viagra';</script><p>Hello</p>"))
    assert "viagra" not in p.html_text and "Hello" in p.html_text


# -- phishing ----------------------------------------------------------------------------------


def test_visible_url_naming_another_site() -> None:
    raw = html('<a href="http://login.evil.test/bank">https://www.bank.example/login</a>')
    assert rules(raw)["PHISH_LINK_MISMATCH"] == "text=www.bank.example href=login.evil.test"


def test_same_site_is_not_phishing() -> None:
    raw = html(
        '<a href="https://www.bank.example/login?x=1">bank.example</a> '
        '<a href="https://mail.bank.example/">Your mailbox</a> '
        '<a href="https://bank.example/">v2.0 release</a>'
    )
    assert rules(raw) == {}


def test_links_to_raw_ip_addresses() -> None:
    assert rules(html('<a href="http://203.0.113.9/login">Log in</a>'))["URL_IP_LITERAL"] == (
        "203.0.113.9"
    )
    assert "URL_IP_LITERAL" in rules(html('<a href="http://3405803785/">here</a>'))  # 203.0.113.9
    assert "URL_IP_LITERAL" in rules(b"Subject: x\r\n\r\nGo to http://[2001:db8::7]/now\r\n")


@pytest.mark.parametrize(
    ("host", "brand"),
    [
        ("paypa1.example", "paypal"),
        ("secure.rnicrosoft.example", "microsoft"),
        ("xn--pple-43d.example", "apple"),  # Cyrillic a
        ("g00gle.example", "google"),
        ("pay-pal.example", "paypal"),
        ("arnazon.example", "amazon"),
        ("rnicrosoft-365.example", "microsoft"),  # one word of a hyphenated name
        ("secure-paypa1-login.example", "paypal"),
        ("appie-id.example", "apple"),
    ],
)
def test_lookalike_domains(host: str, brand: str) -> None:
    assert lookalike_of(host) == brand


@pytest.mark.parametrize(
    "host",
    [
        "paypal.example",
        "example.test",
        "mail.remote.example",
        "203.0.113.9",
        "appleby.example",
        "apple-growers.example",  # the brand's own name as a word is no lookalike
        "spring-outlook-news.example",
    ],
)
def test_not_lookalikes(host: str) -> None:
    assert lookalike_of(host) is None


def test_lookalike_in_links_and_sender() -> None:
    assert "LOOKALIKE_DOMAIN" in rules(html('<a href="https://paypa1.example/">Pay</a>'))
    raw = html("hello", "").replace(b"a@remote.example", b"service@xn--pypal-4ve.example")
    assert rules(raw)["LOOKALIKE_DOMAIN"] == "from xn--pypal-4ve.example~paypal"


# -- URI blocklists ----------------------------------------------------------------------------


def links(*urls: str) -> list[Link]:
    return [Link(u, host_of(u)) for u in urls]


async def test_listed_registered_domain_is_found(dns_server: FakeDNS) -> None:
    dns_server.blocklist("multi.uribl.test").list_name("spammy.example", "127.0.0.2")
    hits = await spam.uribl(
        dns_server.resolver(1.0),
        [UriZone("multi.uribl.test")],
        links("http://click.spammy.example/x", "https://fine.example/"),
    )
    assert hits == [Hit("URIBL_MULTI_URIBL_TEST", 10.0, "spammy.example")]
    asked = {q.name.rstrip(".").lower() for q in dns_server.queries}
    # The registered domain is asked, never the full host name or the path.
    assert "spammy.example.multi.uribl.test" in asked
    assert "click.spammy.example.multi.uribl.test" not in asked


async def test_return_codes_and_weights(dns_server: FakeDNS) -> None:
    bl = dns_server.blocklist("surbl.test")
    bl.list_name("a.example", "127.0.0.8")
    bl.list_name("b.example", "127.0.0.64")
    zone = UriZone("surbl.test", {"127.0.0.8": 4.0})
    hits = await spam.uribl(
        dns_server.resolver(1.0), [zone], links("http://a.example", "http://b.example")
    )
    assert hits == [Hit("URIBL_SURBL_TEST", 4.0, "a.example")]


async def test_refused_queries_are_not_listings(dns_server: FakeDNS) -> None:
    # URIBL answers 127.0.0.1 to resolvers it refuses; Spamhaus 127.255.255.x.
    dns_server.blocklist("uribl.test").list_name("x.example", "127.0.0.1")
    dns_server.blocklist("dbl.test").list_name("x.example", "127.255.255.254")
    zones = [UriZone("uribl.test"), UriZone("dbl.test")]
    assert await spam.uribl(dns_server.resolver(1.0), zones, links("http://x.example/")) == []


async def test_dns_failure_scores_nothing(dns_server: FakeDNS) -> None:
    dns_server.fail("bad.example.uribl.test", mode="servfail")
    dns_server.blocklist("uribl.test").list_name("listed.example")
    hits = await spam.uribl(
        dns_server.resolver(1.0),
        [UriZone("uribl.test")],
        links("http://bad.example", "http://listed.example"),
    )
    assert [h.detail for h in hits] == ["listed.example"]


async def test_ip_links_and_non_domains_are_not_asked(dns_server: FakeDNS) -> None:
    dns_server.clear_log()
    await spam.uribl(
        dns_server.resolver(1.0),
        [UriZone("uribl.test")],
        links("http://203.0.113.9/", "http://localhost/"),
    )
    assert dns_server.queries == []


async def test_lookups_per_message_are_bounded(dns_server: FakeDNS) -> None:
    dns_server.clear_log()
    many = links(*(f"http://d{i}.example/" for i in range(100)))
    await spam.uribl(dns_server.resolver(1.0), [UriZone("uribl.test")], many)
    assert len(dns_server.queries) == spam.MAX_URIBL_DOMAINS


async def test_uribl_answers_are_kept_for_their_ttl_on_the_clock() -> None:
    with FakeDNS() as fake:
        fake.add("spammy.example.uribl.test", "A", "127.0.0.2", ttl=60)
        resolver = fake.resolver()
        resolver.cache = dns.resolver.Cache()
        clock = ManualClock()
        lookup = Lookup(resolver, clock)  # as the spam check keeps one
        zones, found = [UriZone("uribl.test")], links("http://spammy.example/")
        for _ in range(3):
            assert [h.detail for h in await spam.uribl(lookup, zones, found)] == ["spammy.example"]
            resolver.cache.flush()  # only our layer keeps it now
        assert sum(q.name.rstrip(".") == "spammy.example.uribl.test" for q in fake.queries) == 1
        clock.advance(61)
        await spam.uribl(lookup, zones, found)
        assert sum(q.name.rstrip(".") == "spammy.example.uribl.test" for q in fake.queries) == 2
