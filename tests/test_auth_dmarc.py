"""DMARC (RFC 7489, RFC 9091) and organizational domains from the bundled Public Suffix List."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.dns import FakeDNS
from reference.auth.dkim import DkimResult, DkimSignature
from reference.auth.dmarc import (
    Disposition,
    DmarcResult,
    DmarcSyntaxError,
    MemoryRecorder,
    aligned,
    evaluate,
    parse_record,
)
from reference.auth.lookup import Lookup
from reference.auth.psl import PublicSuffixList, default_list, organizational_domain
from reference.auth.spf import SpfCheck, SpfResult


def make_lookup(server: FakeDNS) -> Lookup:
    return Lookup(server.resolver())


# -- the Public Suffix List ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.com", "example.com"),
        ("EXAMPLE.COM.", "example.com"),
        ("www.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own organizational domain
        ("com", "com"),
        ("mail.example.test", "example.test"),  # not in the list: the implicit "*" rule
        ("foo.bar.ck", "foo.bar.ck"),  # *.ck: bar.ck is a suffix
        ("www.ck", "www.ck"),  # !www.ck: the exception makes ck the suffix
        ("a.www.ck", "www.ck"),
        ("a.b.kawasaki.jp", "a.b.kawasaki.jp"),  # *.kawasaki.jp
        ("city.kawasaki.jp", "city.kawasaki.jp"),  # !city.kawasaki.jp
        ("x.city.kawasaki.jp", "city.kawasaki.jp"),
        ("user.github.io", "user.github.io"),  # a private-section suffix
        ("mail.xn--fiqs8s", "mail.xn--fiqs8s"),  # 中国 in A-label form
        ("a.mail.中国", "mail.xn--fiqs8s"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_psl_rules_from_text() -> None:
    psl = PublicSuffixList.parse("// comment\ncom\n*.sch.test\n!www.sch.test\n\n")
    assert psl.organizational_domain("a.b.com") == "b.com"
    assert psl.organizational_domain("x.y.sch.test") == "x.y.sch.test"
    assert psl.organizational_domain("a.www.sch.test") == "www.sch.test"


def test_bundled_list_is_loaded_once() -> None:
    assert default_list() is default_list()
    assert len(default_list().rules) > 5000


# -- records ---------------------------------------------------------------------------------


def test_parse_record_defaults() -> None:
    r = parse_record("v=DMARC1; p=reject")
    assert (r.p, r.sp, r.np, r.adkim, r.aspf, r.pct) == (
        Disposition.REJECT,
        Disposition.REJECT,
        Disposition.REJECT,
        "r",
        "r",
        100,
    )


def test_parse_record_tags() -> None:
    r = parse_record(
        "v=DMARC1;p=quarantine; sp=none; np=reject; adkim=s; aspf=s; pct=20; "
        "rua=mailto:a@example.com,mailto:b@example.com; fo=1; unknown=ignored"
    )
    assert (r.p, r.sp, r.np) == (Disposition.QUARANTINE, Disposition.NONE, Disposition.REJECT)
    assert (r.adkim, r.aspf, r.pct, r.fo) == ("s", "s", 20, "1")
    assert r.rua == ("mailto:a@example.com", "mailto:b@example.com")


@pytest.mark.parametrize(
    "text", ["v=DMARC2; p=reject", "p=reject; v=DMARC1", "v=DMARC1", "v=DMARC1; p=maybe"]
)
def test_bad_records(text: str) -> None:
    with pytest.raises(DmarcSyntaxError):
        parse_record(text)


def test_missing_p_with_rua_is_p_none() -> None:
    # RFC 7489 6.6.3 step 6: a valid rua= turns a record without p= into p=none.
    assert parse_record("v=DMARC1; rua=mailto:r@example.com").p is Disposition.NONE


# -- alignment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "mode", "ok"),
    [
        ("example.com", "example.com", "s", True),
        ("mail.example.com", "example.com", "s", False),
        ("mail.example.com", "example.com", "r", True),
        ("a.example.com", "b.example.com", "r", True),
        ("example.com", "example.net", "r", False),
        ("example.co.uk", "other.co.uk", "r", False),
        ("Example.COM", "example.com.", "s", True),
        ("", "example.com", "r", False),
    ],
)
def test_alignment(a: str, b: str, mode: str, ok: bool) -> None:
    assert aligned(a, b, mode) is ok


# -- evaluation ------------------------------------------------------------------------------


def spf(result: SpfResult, domain: str) -> SpfCheck:
    return SpfCheck(result, domain, "mailfrom", f"bounce@{domain}")


def sig(result: DkimResult, domain: str) -> DkimSignature:
    return DkimSignature(result, domain=domain, selector="s", algorithm="rsa-sha256")


@pytest.fixture
def fdns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        server.dmarc("bank.example", "v=DMARC1; p=reject; sp=quarantine; np=reject")
        server.add("bank.example", "A", "192.0.2.1")
        server.add("www.bank.example", "A", "192.0.2.1")
        server.dmarc("strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s")
        server.dmarc("half.example", "v=DMARC1; p=reject; pct=50")
        server.dmarc("watch.example", "v=DMARC1; p=none")
        yield server


# (from domain, SPF, DKIM) -> (result, policy, disposition)
CASES = [
    ("bank.example", spf(SpfResult.PASS, "bank.example"), [], ("pass", "reject", "none")),
    ("bank.example", spf(SpfResult.PASS, "mail.bank.example"), [], ("pass", "reject", "none")),
    ("bank.example", spf(SpfResult.PASS, "evil.example"), [], ("fail", "reject", "reject")),
    ("bank.example", spf(SpfResult.FAIL, "bank.example"), [], ("fail", "reject", "reject")),
    (
        "bank.example",
        spf(SpfResult.FAIL, "bank.example"),
        [sig(DkimResult.PASS, "news.bank.example")],
        ("pass", "reject", "none"),
    ),
    (
        "bank.example",
        None,
        [sig(DkimResult.PASS, "evil.example"), sig(DkimResult.FAIL, "bank.example")],
        ("fail", "reject", "reject"),
    ),
    ("www.bank.example", None, [], ("fail", "quarantine", "quarantine")),  # sp=
    ("nxsub.bank.example", None, [], ("fail", "reject", "reject")),  # np= (RFC 9091)
    (
        "strict.example",
        None,
        [sig(DkimResult.PASS, "mail.strict.example")],
        ("fail", "reject", "reject"),
    ),
    ("strict.example", spf(SpfResult.PASS, "strict.example"), [], ("pass", "reject", "none")),
    ("watch.example", None, [], ("fail", "none", "none")),
    ("nothing.example", spf(SpfResult.PASS, "nothing.example"), [], ("none", "none", "none")),
]


@pytest.mark.parametrize(("domain", "spf_check", "sigs", "expected"), CASES)
async def test_evaluation_table(
    fdns: FakeDNS,
    domain: str,
    spf_check: SpfCheck | None,
    sigs: list[DkimSignature],
    expected: tuple[str, str, str],
) -> None:
    ev = await evaluate(make_lookup(fdns), domain, spf_check, sigs)
    assert (ev.result.value, ev.policy.value, ev.disposition.value) == expected, ev


async def test_record_found_at_the_organizational_domain(fdns: FakeDNS) -> None:
    ev = await evaluate(make_lookup(fdns), "www.bank.example", None, [])
    assert ev.policy_domain == "bank.example" and ev.org_domain == "bank.example"


async def test_pct_samples_with_the_injected_source(fdns: FakeDNS) -> None:
    lookup = make_lookup(fdns)
    inside = await evaluate(lookup, "half.example", None, [], sample=lambda: 0.2)
    outside = await evaluate(lookup, "half.example", None, [], sample=lambda: 0.7)
    assert inside.disposition is Disposition.REJECT and not inside.sampled_out
    assert outside.disposition is Disposition.QUARANTINE and outside.sampled_out


async def test_dns_failure_is_temperror(fdns: FakeDNS) -> None:
    fdns.fail("_dmarc.broken.example", "TXT", "servfail")
    ev = await evaluate(make_lookup(fdns), "broken.example", None, [])
    assert ev.result is DmarcResult.TEMPERROR


async def test_aligned_temperror_is_noted(fdns: FakeDNS) -> None:
    ev = await evaluate(
        make_lookup(fdns), "bank.example", None, [sig(DkimResult.TEMPERROR, "bank.example")]
    )
    assert ev.result is DmarcResult.FAIL and ev.aligned_temperror


async def test_two_records_are_no_record(fdns: FakeDNS) -> None:
    fdns.add_txt("_dmarc.twice.example", "v=DMARC1; p=reject")
    fdns.add_txt("_dmarc.twice.example", "v=DMARC1; p=none")
    ev = await evaluate(make_lookup(fdns), "twice.example", None, [])
    assert ev.result is DmarcResult.NONE


async def test_broken_record_is_permerror(fdns: FakeDNS) -> None:
    fdns.dmarc("typo.example", "v=DMARC1; p=rejetc")
    ev = await evaluate(make_lookup(fdns), "typo.example", None, [])
    assert ev.result is DmarcResult.PERMERROR


def test_memory_recorder_is_bounded() -> None:
    rec = MemoryRecorder(limit=2)
    for _ in range(3):
        rec.record(object())  # type: ignore[arg-type]
    assert len(rec.observations) == 2
