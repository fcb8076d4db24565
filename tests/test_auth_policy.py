"""The sender-authentication checks: results become replies, Junk filings and header edits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import authres
import authres.arc
import authres.dmarc
import dkim as dkimpy
import pytest

from fakes.dns import FakeDNS
from reference.auth import dkim
from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dmarc import Disposition, MemoryRecorder
from reference.auth.keys import KeyStore, SigningKey
from reference.auth.lookup import Lookup
from reference.auth.results import authentication_results, authserv_id_of, forged_fields
from reference.auth.spf import SpfCheck, SpfResult
from reference.clock import ManualClock
from reference.directory import Directory
from reference.mail.message import Field, Message, header_fields, split_message
from reference.policy import (
    CONTINUE,
    KEEP,
    Action,
    CheckResult,
    Filing,
    Policy,
    Session,
    Transaction,
    transaction,
)
from reference.policy.auth import DkimSigning, SenderAuthentication

AUTHSERV = "mx.example.test"
CLIENT = "192.0.2.10"
MX = Session(role="mx", peer=CLIENT, helo="mail.bank.example")


def message(from_: str = "alice@bank.example", extra: bytes = b"") -> bytes:
    return (
        f"From: {from_}\r\nTo: bob@example.test\r\nSubject: hi\r\n".encode()
        + extra
        + b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <x@bank.example>\r\n\r\nhello\r\n"
    )


@pytest.fixture(scope="module")
def bank_keys(tmp_path_factory: pytest.TempPathFactory) -> list[SigningKey]:
    return KeyStore(tmp_path_factory.mktemp("bank")).generate("bank.example", "k")


@pytest.fixture
def fdns(bank_keys: list[SigningKey]) -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        server.spf("bank.example", "v=spf1 ip4:192.0.2.10 -all")
        server.dmarc("bank.example", "v=DMARC1; p=reject")
        server.spf("careful.example", "v=spf1 -all")
        server.dmarc("careful.example", "v=DMARC1; p=quarantine")
        server.spf("loose.example", "v=spf1 -all")  # SPF fail, no DMARC
        for k in bank_keys:
            v = k.public_record()
            server.add_txt(k.record_name, *[v[i : i + 255] for i in range(0, len(v), 255)])
        yield server


def lookup_for(server: FakeDNS) -> Lookup:
    return Lookup(server.resolver())


def check(server: FakeDNS, **kw: object) -> SenderAuthentication:
    return SenderAuthentication(
        lookup_for(server),
        ManualClock(),
        authserv_id=AUTHSERV,
        **kw,  # type: ignore[arg-type]
    )


async def run(c: SenderAuthentication, sender: str, msg: bytes, s: Session = MX) -> CheckResult:
    # One transaction from MAIL to DATA: the SPF started at MAIL is the one DATA awaits.
    tx = transaction(s, sender, ["bob@example.test"])
    assert (await c.mail(tx)) is CONTINUE
    tx.message = Message(msg)
    return await c.data(tx)


def ar_of(result: CheckResult) -> authres.AuthenticationResultsHeader:
    text = result.prepend_headers.decode()
    assert text.startswith("Authentication-Results: ")
    ctx = authres.FeatureContext(authres.dmarc, authres.arc)
    return ctx.parse(text.replace("\r\n\t", " ").strip())


def methods(result: CheckResult) -> dict[str, str]:
    """The first result of each method (the MAIL FROM SPF result comes before HELO's)."""
    out: dict[str, str] = {}
    for r in ar_of(result).results:
        out.setdefault(r.method, r.result)
    return out


# -- inbound ---------------------------------------------------------------------------------


async def test_spf_pass_aligned_is_accepted_with_results(fdns: FakeDNS) -> None:
    rec = MemoryRecorder()
    r = await run(check(fdns, recorder=rec), "bounce@bank.example", message())
    assert r.action is Action.CONTINUE and r.filing == KEEP
    header = ar_of(r)
    assert header.authserv_id == AUTHSERV
    got = [(res.method, res.result) for res in header.results]
    assert got == [("spf", "pass"), ("spf", "none"), ("dmarc", "pass"), ("arc", "none")]
    assert "smtp.mailfrom=bounce@bank.example" in str(header)
    assert "smtp.helo=mail.bank.example" in str(header)
    assert len(rec.observations) == 1
    assert rec.observations[0].applied is Disposition.NONE


async def test_dmarc_reject_refuses_with_550_5_7_1(fdns: FakeDNS) -> None:
    rec = MemoryRecorder()
    r = await run(
        check(fdns, recorder=rec),
        "ceo@bank.example",
        message(),
        Session(role="mx", peer="198.51.100.7", helo="spoofer.example"),
    )
    assert r.action is Action.REJECT and r.reply is not None
    assert (r.reply.code, r.reply.enhanced) == (550, "5.7.1")
    assert "bank.example" in r.reply.text and "DMARC" in r.reply.text
    assert rec.observations[0].applied is Disposition.REJECT


async def test_dmarc_reject_can_be_quarantine_by_configuration(fdns: FakeDNS) -> None:
    spoof = Session(role="mx", peer="198.51.100.7", helo="spoofer.example")
    r = await run(check(fdns, dmarc_reject=False), "ceo@bank.example", message(), spoof)
    assert r.action is Action.CONTINUE and r.filing == Filing(folder="Junk")


async def test_dkim_pass_aligned_rescues_a_forwarded_message(
    fdns: FakeDNS, bank_keys: list[SigningKey]
) -> None:
    msg = message()
    signed = dkim.sign(msg, bank_keys, now=ManualClock().now()) + msg
    fwd = Session(role="mx", peer="198.51.100.7", helo="forwarder.example")
    r = await run(check(fdns), "srs0=x@forwarder.example", signed, fwd)
    assert r.action is Action.CONTINUE and r.filing == KEEP
    got = [(res.method, res.result) for res in ar_of(r).results]
    assert ("dkim", "pass") in got and ("dmarc", "pass") in got


async def test_mailing_list_is_not_rejected(fdns: FakeDNS) -> None:
    listed = message(extra=b"List-Id: <talk.lists.example>\r\n")
    lst = Session(role="mx", peer="198.51.100.8", helo="lists.example")
    rec = MemoryRecorder()
    r = await run(check(fdns, recorder=rec), "talk-bounces@lists.example", listed, lst)
    assert r.action is Action.CONTINUE and r.filing == Filing(folder="Junk")
    assert rec.observations[0].overrides == ("mailing_list",)


async def test_trusted_arc_sealer_lets_it_through(fdns: FakeDNS) -> None:
    c = check(fdns, arc_trusted=["lists.example"])
    trusted = ArcChain(ArcResult.PASS, 1, ("lists.example",))
    other = ArcChain(ArcResult.PASS, 1, ("evil.example",))
    assert c._trusted_arc(trusted) and not c._trusted_arc(other)
    assert not c._trusted_arc(ArcChain(ArcResult.FAIL, 1, ("lists.example",)))


async def test_quarantine_files_into_junk(fdns: FakeDNS) -> None:
    r = await run(check(fdns), "x@careful.example", message("x@careful.example"))
    assert r.action is Action.CONTINUE and r.filing == Filing(folder="Junk")
    r2 = await run(
        check(fdns, dmarc_quarantine=False), "x@careful.example", message("x@careful.example")
    )
    assert r2.filing == KEEP


async def test_spf_fail_alone_never_refuses(fdns: FakeDNS) -> None:
    r = await run(check(fdns), "x@loose.example", message("x@loose.example"))
    assert r.action is Action.CONTINUE and r.filing == KEEP
    assert methods(r)["spf"] == "fail"


async def test_dns_failure_on_the_policy_tempfails(fdns: FakeDNS) -> None:
    fdns.fail("_dmarc.flaky.example", "TXT", "servfail")
    r = await run(check(fdns), "x@flaky.example", message("x@flaky.example"))
    assert r.action is Action.TEMPFAIL and r.reply is not None
    assert (r.reply.code, r.reply.enhanced) == (451, "4.4.3")
    off = await run(
        check(fdns, dmarc_tempfail=False), "x@flaky.example", message("x@flaky.example")
    )
    assert off.action is Action.CONTINUE


async def test_forged_results_are_removed(fdns: FakeDNS) -> None:
    forged = b"Authentication-Results: MX.example.test;\r\n\tdkim=pass header.d=bank.example\r\n"
    theirs = b"Authentication-Results: mx.other.example; spf=pass\r\n"
    msg = forged + theirs + message()
    r = await run(check(fdns), "bounce@bank.example", msg)
    assert r.remove_headers == (forged,)
    edited = r.edit(msg)
    assert forged not in edited and theirs in edited
    header, _ = split_message(edited)
    ours = [f for f in header_fields(header) if f.lname == "authentication-results"]
    assert [authserv_id_of(f) for f in ours] == [AUTHSERV, "mx.other.example"]


async def test_submission_is_not_verified(fdns: FakeDNS) -> None:
    sub = Session(role="submission", peer=CLIENT, user="alice@example.test")
    c = check(fdns)
    assert await c.mail(transaction(sub, "alice@example.test")) is CONTINUE
    assert await c.data(transaction(sub, "alice@example.test", ["x@y"], message())) is CONTINUE
    # ... but results claiming to be ours are taken out there too.
    forged = f"Authentication-Results: {AUTHSERV}; dmarc=pass\r\n".encode()
    r = await c.data(transaction(sub, "alice@example.test", ["x@y"], forged + message()))
    assert r.action is Action.CONTINUE and r.remove_headers == (forged,) and not r.prepend_headers


async def test_spf_started_at_mail_is_the_one_data_awaits(fdns: FakeDNS) -> None:
    c = check(fdns)
    tx = transaction(MX, "bounce@bank.example", ["bob@example.test"])
    await c.mail(tx)
    started = tx.spf
    assert started is not None  # on the transaction, not in a process-wide table
    tx.message = Message(message())
    r = await c.data(tx)
    assert tx.spf is started and started.done() and methods(r)["spf"] == "pass"
    # Without a MAIL seen (a diagnostics command), DATA evaluates afresh.
    r = await c.data(transaction(MX, "bounce@bank.example", ["bob@example.test"], message()))
    assert methods(r)["spf"] == "pass"


async def test_a_transaction_that_ends_stops_its_spf(fdns: FakeDNS) -> None:
    # RSET, a new MAIL or a dropped connection: the evaluation nobody will await stops.
    c = check(fdns)
    tx = transaction(MX, "a@bank.example")
    await c.mail(tx)
    assert tx.spf is not None
    tx.close()
    await asyncio.sleep(0)
    assert tx.spf.cancelled()
    assert await tx.spf_mail_from() is None


# -- Authentication-Results rendering --------------------------------------------------------


def test_results_field_parses_back() -> None:
    field = authentication_results(
        AUTHSERV,
        spf=[SpfCheck(SpfResult.SOFTFAIL, "a.example", "mailfrom", "x@a.example", "matched ~all")],
        remote_ip=CLIENT,
        arc=ArcChain(ArcResult.NONE),
    )
    assert field.endswith(b"\r\n") and b"\r\n\t" in field
    parsed = authres.FeatureContext(authres.arc).parse(
        field.decode().replace("\r\n\t", " ").strip()
    )
    assert parsed.authserv_id == AUTHSERV
    assert [r.method for r in parsed.results] == ["spf", "arc"]
    assert (
        authentication_results(AUTHSERV) == f"Authentication-Results: {AUTHSERV}; none\r\n".encode()
    )


def test_authserv_id_with_comment_and_version() -> None:
    f = Field("Authentication-Results", b"Authentication-Results: (c) MX.Example.Test 1; none\r\n")
    assert authserv_id_of(f) == "mx.example.test"
    assert forged_fields(b"Authentication-Results:  mx.example.test; spf=pass\r\n\r\n", AUTHSERV)


def test_check_results_accumulate_along_the_chain() -> None:
    first = CheckResult(Action.CONTINUE, prepend_headers=b"A: 1\r\n", filing=Filing(folder="Junk"))
    second = CheckResult(
        Action.CONTINUE, prepend_headers=b"B: 2\r\n", remove_headers=(b"X: y\r\n",)
    )
    merged = second.after(first)
    assert merged.edit(b"X: y\r\nZ: z\r\n\r\nbody X: y\r\n") == (
        b"B: 2\r\nA: 1\r\nZ: z\r\n\r\nbody X: y\r\n"
    )
    assert merged.filing == Filing(folder="Junk")


async def test_policy_chain_keeps_edits_of_continuing_checks() -> None:
    from reference.policy import Check

    class Adds(Check):
        def __init__(self, line: bytes) -> None:
            self.line = line

        async def data(self, tx: Transaction) -> CheckResult:
            return CheckResult(Action.CONTINUE, prepend_headers=self.line)

    r = await Policy([Adds(b"A: 1\r\n"), Adds(b"B: 2\r\n")]).data(transaction(MX, "", [], b"\r\n"))
    assert r.prepend_headers == b"B: 2\r\nA: 1\r\n" and not r.refuses


# -- outbound signing ------------------------------------------------------------------------


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    d = Directory(tmp_path / "dir.sqlite3")
    d.add_domain("example.test")
    yield d
    d.close()


async def test_submission_is_dual_signed(tmp_path: Path, directory: Directory) -> None:
    store = KeyStore(tmp_path / "dkim")
    signer = DkimSigning(store, directory, ManualClock(), selector="mailspec")
    sub = Session(role="submission", peer=CLIENT, user="alice@example.test")
    msg = message("Alice <alice@example.test>")
    r = await signer.data(transaction(sub, "alice@example.test", ["bob@else.example"], msg))
    assert r.prepend_headers.count(b"DKIM-Signature:") == 2
    keys = store.load("example.test", "mailspec")
    records = {k.record_name.encode(): k.public_record().encode() for k in keys}
    signed = r.edit(msg)
    d = dkimpy.DKIM(signed)
    for i in range(2):
        assert d.verify(idx=i, dnsfunc=lambda n, timeout=5: records.get(n.rstrip(b".")))
    assert (tmp_path / "dkim" / "example.test" / "mailspec.rsa.key").exists()


async def test_foreign_from_is_not_signed_for(tmp_path: Path, directory: Directory) -> None:
    signer = DkimSigning(KeyStore(tmp_path / "dkim"), directory, ManualClock(), selector="s")
    sub = Session(role="submission", peer=CLIENT, user="alice@example.test")
    foreign = message("someone@elsewhere.example")
    r = await signer.data(transaction(sub, "alice@example.test", ["x@y.example"], foreign))
    assert b"d=example.test" in r.prepend_headers  # the envelope's domain is ours
    r2 = await signer.data(transaction(sub, "a@elsewhere.example", ["x@y.example"], foreign))
    assert r2 is CONTINUE
    mx = await signer.data(transaction(MX, "alice@example.test", ["x@y.example"], message()))
    assert mx is CONTINUE


async def test_a_session_cancelled_while_waiting_for_spf_stays_cancelled(fdns: FakeDNS) -> None:
    # Greylisting (bypass_spf_domains) waits for the SPF result at RCPT, where the SMTP
    # session is cancelled if its client hangs up. Answering "no result" instead let the
    # session carry on after its client had gone.
    fdns.fail("bank.example", "TXT", mode="slow", delay=1.0)
    c = check(fdns)
    tx = transaction(MX, "alice@bank.example")
    await c.mail(tx)
    waiting = asyncio.create_task(tx.spf_mail_from())
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert tx.spf is not None and not tx.spf.done()  # the SPF itself went on, for DATA
    tx.close()
