"""DMARC aggregate reports: the store, destinations (RFC 7489 7.1), the daily task, intake, CLI."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
import smtplib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fakes.dns import FakeDNS
from fakes.internet import FakeInternet
from reference.auth import dkim
from reference.auth.dkim import DkimResult, DkimSignature
from reference.auth.dmarc import (
    Disposition,
    DmarcEvaluation,
    DmarcObservation,
    DmarcResult,
    parse_record,
)
from reference.auth.feedback import (
    DkimAuth,
    Feedback,
    PolicyPublished,
    Row,
    SpfAuth,
    gzipped,
    parse,
    render,
)
from reference.auth.keys import KeyStore
from reference.auth.lookup import DnsTempError, Lookup
from reference.auth.reports import (
    SENDING_TIMEOUT,
    AggregateReporter,
    Destination,
    DmarcStore,
    ReportIntake,
    Rua,
    SentReport,
    authorized,
    parse_rua,
    report_message,
)
from reference.auth.spf import SpfCheck, SpfResult
from reference.cli import main
from reference.clock import ManualClock
from reference.spool import Spool
from reference.testing import ReferenceServer

T0 = 1_767_225_600.0
DAY = 86400.0


def make_lookup(server: FakeDNS) -> Lookup:
    return Lookup(server.resolver(1.0))


def observation(
    domain: str = "bank.example",
    record: str = "v=DMARC1; p=reject; rua=mailto:dmarc@bank.example",
    *,
    ip: str = "192.0.2.1",
    spf: SpfResult = SpfResult.PASS,
    applied: Disposition = Disposition.NONE,
    when: float = T0,
    has_record: bool = True,
    optional: bool = False,
) -> DmarcObservation:
    rec = parse_record(record) if has_record else None
    passed = spf is SpfResult.PASS
    ev = DmarcEvaluation(
        DmarcResult.PASS if passed else DmarcResult.FAIL,
        domain,
        policy_domain=domain if has_record else "",
        org_domain=domain,
        record=rec,
        policy=rec.p if rec else Disposition.NONE,
        spf_aligned=passed,
    )
    return DmarcObservation(
        when=when,
        source_ip=ip,
        envelope_from=f"bounce@{domain}",
        helo="mx.sender.example",
        evaluation=ev,
        spf=SpfCheck(spf, domain, "mailfrom", f"bounce@{domain}"),
        dkim=(DkimSignature(DkimResult.FAIL, domain, "s1", "rsa-sha256"),),
        applied=applied,
        optional=optional,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DmarcStore]:
    s = DmarcStore(tmp_path / "dmarc.sqlite3")
    yield s
    s.close()


# -- the store -------------------------------------------------------------------------------


def test_record_aggregates_identical_rows(store: DmarcStore) -> None:
    for _ in range(3):
        store.record(observation())
    store.record(observation(ip="192.0.2.2"))
    store.record(observation(spf=SpfResult.FAIL, applied=Disposition.REJECT))
    store.record(observation("nopolicy.example", has_record=False))  # nobody to report to
    assert store.pending() == [("bank.example", 5)]
    assert len(store.observations) == 6
    assert store.rotate(T0 + DAY, DAY)
    (period,) = store.claim(T0 + DAY)
    (policy, rows), *_ = store.rows(period.id).values()
    assert policy["rua"] == ["mailto:dmarc@bank.example"] and policy["p"] == "reject"
    counts = sorted((r.source_ip, r.count, r.disposition, r.spf) for r in rows)
    assert counts == [
        ("192.0.2.1", 1, "reject", "fail"),
        ("192.0.2.1", 3, "none", "pass"),
        ("192.0.2.2", 1, "none", "pass"),
    ]
    row = next(r for r in rows if r.count == 3)
    assert row.envelope_from == "bank.example" and row.dkim_results[0].result == "fail"
    store.finish(period.id)
    assert store.pending() == [] and store.claim(T0 + DAY) == []


def test_a_row_is_stored_under_the_key_earlier_versions_wrote(store: DmarcStore) -> None:
    # Counts add up under the row's key text: a key written differently after an upgrade
    # would split one period's count in two rows.
    store.record(observation())
    (key,) = [k for (k,) in sqlite3.connect(store.path).execute("SELECT row FROM observations")]
    assert key == (
        '{"disposition":"none","dkim":"fail","dkim_results":[{"domain":"bank.example",'
        '"result":"fail","selector":"s1"}],"envelope_from":"bank.example","envelope_to":"",'
        '"header_from":"bank.example","reasons":[],"source_ip":"192.0.2.1","spf":"pass",'
        '"spf_results":[{"domain":"bank.example","result":"pass","scope":"mfrom"}]}'
    )


def test_periods_rotate_once_and_are_claimed_once(tmp_path: Path) -> None:
    # Two nodes sharing data_dir: each period is closed once and sent by one of them.
    a, b = DmarcStore(tmp_path / "d.sqlite3"), DmarcStore(tmp_path / "d.sqlite3")
    try:
        assert a.open_period(T0) == T0 and b.open_period(T0 + 5) == T0
        a.record(observation(when=T0 + 10))
        assert not a.rotate(T0 + DAY - 1, DAY)
        assert a.rotate(T0 + DAY, DAY) and not b.rotate(T0 + DAY, DAY)
        b.record(observation(when=T0 + DAY + 1))  # lands in the new period
        claimed = a.claim(T0 + DAY) + b.claim(T0 + DAY)
        assert len(claimed) == 1 and claimed[0].begin == T0 and claimed[0].end == T0 + DAY
        # A node that died while sending: another takes the period over after a while.
        assert b.claim(T0 + DAY + SENDING_TIMEOUT - 1) == []
        assert [p.id for p in b.claim(T0 + DAY + SENDING_TIMEOUT + 1)] == [claimed[0].id]
        assert b.pending() == [("bank.example", 2)]
    finally:
        a.close()
        b.close()


def test_optional_evaluations_never_cause_a_report(store: DmarcStore) -> None:
    # Reports about reports (mox's rule): a domain only reports came from gets none; one
    # that gets a report anyway has them counted.
    store.record(observation("reporter.example", optional=True))
    store.record(observation(optional=True))
    store.record(observation(ip="192.0.2.7"))
    store.record(observation())  # the same row as the optional one: merged, now required
    assert store.pending() == [("bank.example", 3), ("reporter.example", 1)]
    assert store.rotate(T0 + DAY, DAY)
    (period,) = store.claim(T0 + DAY)
    found = store.rows(period.id)
    assert list(found) == ["bank.example"]
    assert sorted((r.source_ip, r.count) for r in found["bank.example"][1]) == [
        ("192.0.2.1", 2),
        ("192.0.2.7", 1),
    ]
    store.finish(period.id)
    assert store.pending() == []


def test_a_file_from_before_optional_evaluations_is_read(tmp_path: Path) -> None:
    path = tmp_path / "dmarc.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE observations (period INTEGER NOT NULL, policy_domain TEXT NOT NULL, "
        "policy TEXT NOT NULL, row TEXT NOT NULL, count INTEGER NOT NULL, "
        "first_seen REAL NOT NULL, last_seen REAL NOT NULL, "
        "UNIQUE (period, policy_domain, policy, row));"
        "INSERT INTO observations VALUES (1, 'old.example', '{}', 'x', 4, 0, 0);"
    )
    old.close()
    a, b = DmarcStore(path), DmarcStore(path)  # the second finds the column added
    try:
        a.record(observation())
        assert a.pending() == [("bank.example", 1), ("old.example", 4)]
    finally:
        a.close()
        b.close()


def test_reports_sent_are_kept(store: DmarcStore) -> None:
    def report(domain: str, begin: int) -> SentReport:
        return SentReport(f"{begin}.{domain}", domain, begin, begin + 9, 0.0, 5, 4, ())

    for domain, begin in [("bank.example", 1), ("news.bank.example", 2), ("other.example", 3)]:
        store.store_sent(report(domain, begin), f"<{domain}/>".encode())
    store.store_sent(report("bank.example", 1), b"<again/>")  # a period sent again: replaced
    assert [r.policy_domain for r in store.sent()] == [
        "other.example",
        "news.bank.example",
        "bank.example",
    ]
    assert [r.begin for r in store.sent(["BANK.example."])] == [2, 1]
    assert store.sent([]) == [] and store.sent(["ank.example"]) == []
    assert store.sent_xml("1.bank.example") == ("bank.example", b"<again/>")
    assert store.sent_xml("nothing") is None
    assert store.sent()[0].failed == 1


def test_received_reports_are_kept_once(store: DmarcStore) -> None:
    fb = Feedback("google.com", "x@google.com", "r1", 1, 2, PolicyPublished("example.test"))
    sub = Feedback("google.com", "x@google.com", "r2", 3, 4, PolicyPublished("news.example.test"))
    assert store.store_received(fb, T0, "postmaster@example.test")
    assert not store.store_received(fb, T0 + 1, "postmaster@example.test")
    assert store.store_received(sub, T0, "postmaster@example.test")
    assert store.received("example.test") == [fb, sub]
    assert store.received("other.test") == []


# -- destinations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mailto:dmarc@example.com", Rua("dmarc@example.com")),
        (" MAILTO:dmarc%2Breports@example.com!10m", Rua("dmarc+reports@example.com", 10 << 20)),
        ("mailto:a@example.com!500", Rua("a@example.com", 500)),
        ("mailto:a@example.com!10x", None),
        ("https://example.com/dmarc", None),
        ("mailto:not-an-address", None),
        ("mailto:", None),
    ],
)
def test_parse_rua(uri: str, expected: Rua | None) -> None:
    assert parse_rua(uri) == expected


async def test_external_destinations_must_agree() -> None:
    with FakeDNS() as fdns:
        lookup = make_lookup(fdns)
        same_org = Rua("dmarc@reports.bank.example")
        assert await authorized(lookup, "bank.example", same_org) == [same_org]
        outside = Rua("dmarc@vendor.example")
        assert await authorized(lookup, "bank.example", outside) == []
        fdns.add_txt("bank.example._report._dmarc.vendor.example", "v=DMARC1")
        assert await authorized(lookup, "bank.example", outside) == [outside]
        # A rua= in the authorization redirects, but only to the same host.
        fdns.remove("bank.example._report._dmarc.vendor.example")
        fdns.add_txt(
            "bank.example._report._dmarc.vendor.example",
            "v=DMARC1; rua=mailto:bank@vendor.example,mailto:x@elsewhere.example",
        )
        assert await authorized(lookup, "bank.example", outside) == [Rua("bank@vendor.example")]
        fdns.fail("bank.example._report._dmarc.vendor.example", "TXT", "servfail")
        with pytest.raises(DnsTempError):
            await authorized(lookup, "bank.example", outside)


def test_report_message_format() -> None:
    fb = Feedback(
        "mail.example.test",
        "dmarc-reports@mail.example.test",
        "1767225600.abc@mail.example.test",
        int(T0),
        int(T0 + DAY),
        PolicyPublished("bank.example", p="reject"),
        (
            Row(
                "192.0.2.1",
                4,
                "none",
                "pass",
                "pass",
                "bank.example",
                spf_results=(SpfAuth("bank.example", "mfrom", "pass"),),
            ),
        ),
    )
    raw = report_message(
        fb,
        to="dmarc@bank.example",
        sender="dmarc-reports@mail.example.test",
        submitter="mail.example.test",
        now=T0 + DAY,
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == (
        "Report Domain: bank.example Submitter: mail.example.test "
        "Report-ID: <1767225600.abc@mail.example.test>"
    )
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_attachments())
    assert [p.get_content_type() for p in parts] == ["application/gzip"]
    assert parts[0].get_filename() == "mail.example.test!bank.example!1767225600!1767312000.xml.gz"
    assert parse(parts[0].get_payload(decode=True)) == fb
    assert "4 message(s)" in msg.get_body(("plain",)).get_content()


# -- the daily task --------------------------------------------------------------------------


async def _until(check: Callable[[], object]) -> None:
    deadline = time.monotonic() + 30.0  # a bound for a busy machine, not a wait
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_reporter_sends_a_day_of_evaluations(tmp_path: Path, store: DmarcStore) -> None:
    clock = ManualClock(T0)
    spool = Spool(tmp_path / "spool", clock)
    keys = KeyStore(tmp_path / "dkim")
    signing = keys.generate("reports.example", "mailspec")
    woken: list[str] = []
    with FakeDNS() as fdns:
        for k in signing:
            v = k.public_record()
            fdns.add_txt(k.record_name, *[v[i : i + 255] for i in range(0, len(v), 255)])
        fdns.add_txt("bank.example._report._dmarc.vendor.example", "v=DMARC1")
        lookup = make_lookup(fdns)
        reporter = AggregateReporter(
            store,
            spool,
            clock,
            lookup,
            hostname="mail.example.test",
            report_from="dmarc@reports.example",
            notify=woken.append,
            keys=keys,
        )
        rua = (
            "v=DMARC1; p=quarantine; rua=mailto:agg@bank.example,"
            "mailto:x@stranger.example,mailto:bank@vendor.example!1k,mailto:b@vendor.example"
        )
        assert store.open_period(T0) == T0
        task = asyncio.create_task(reporter.run())
        try:
            for i in range(3):
                store.record(observation(record=rua, when=T0 + i))
            store.record(observation("quiet.example", "v=DMARC1; p=none", when=T0 + 5))
            clock.advance(DAY - 1)
            await asyncio.sleep(0.05)
            assert spool.entries() == []
            clock.advance(1)
            # Until the period is finished, not only queued: its rows are forgotten after
            # the last report is spooled, and cancelling before that would keep them.
            await _until(lambda: len(woken) == 2 and not store.pending())
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        entries = spool.entries()
        # agg@ is in the domain itself; stranger.example never agreed (RFC 7489 7.1);
        # the !1k one is too small for the report (RFC 7489 6.2).
        assert sorted(r.address for e in entries for r in e.recipients) == [
            "agg@bank.example",
            "b@vendor.example",
        ]
        assert sorted(woken) == sorted(e.qid for e in entries)
        assert {e.sender for e in entries} == {"dmarc@reports.example"}
        data = spool.read_message(entries[0].qid)
        sigs = await dkim.verify(lookup, data, now=clock.now())
        assert [s.result for s in sigs] == [DkimResult.PASS, DkimResult.PASS]
    msg = email.message_from_bytes(data, policy=email.policy.default)
    (part,) = msg.iter_attachments()
    fb = parse(part.get_payload(decode=True))
    assert (fb.begin, fb.end) == (int(T0), int(T0 + DAY))
    assert fb.policy == PolicyPublished("bank.example", p="quarantine", sp="quarantine")
    assert [(r.source_ip, r.count) for r in fb.rows] == [("192.0.2.1", 3)]
    assert store.pending() == []  # quiet.example asked for no reports: dropped
    # Kept: what the report counted, where it went and where not, and why.
    (kept,) = store.sent()
    assert (kept.report_id, kept.policy_domain, kept.messages, kept.passed) == (
        fb.report_id,
        "bank.example",
        3,
        3,
    )
    assert (kept.begin, kept.end) == (int(T0), int(T0 + DAY))
    by_rua = {d.rua: d for d in kept.destinations}
    assert sorted(d.qid for d in by_rua.values() if d.qid) == sorted(woken)
    assert "RFC 7489 7.1" in by_rua["x@stranger.example"].skipped
    assert "larger than its limit of 1024" in by_rua["bank@vendor.example"].skipped
    assert by_rua["agg@bank.example"] == Destination(
        "agg@bank.example", qid=by_rua["agg@bank.example"].qid
    )
    xml = store.sent_xml(fb.report_id)
    assert xml is not None and parse(xml[1]) == fb


# -- reports received ------------------------------------------------------------------------


def _report_mail(domain: str, report_id: str = "r-1", sender: str = "") -> bytes:
    fb = Feedback(
        "google.com",
        "noreply-dmarc-support@google.com",
        report_id,
        int(T0),
        int(T0 + DAY),
        PolicyPublished(domain, p="reject"),
        (
            Row("192.0.2.10", 7, "none", "pass", "pass", domain),
            Row("198.51.100.9", 2, "reject", "fail", "fail", domain),
        ),
    )
    return report_message(
        fb, to=f"postmaster@{domain}", sender=sender or fb.email, submitter="google.com", now=T0
    )


def test_intake_keeps_reports_about_our_domains(store: DmarcStore) -> None:
    intake = ReportIntake(store, lambda d: d == "example.test", ManualClock(T0))
    intake("postmaster@example.test", _report_mail("example.test"))
    intake("postmaster@example.test", _report_mail("news.example.test", "r-2"))
    intake("postmaster@example.test", _report_mail("other.test", "r-3"))  # not ours
    intake("postmaster@example.test", b"From: a@b\r\n\r\nnot a report\r\n")
    assert [r.report_id for r in store.received("example.test")] == ["r-1", "r-2"]
    store.close()
    intake("postmaster@example.test", _report_mail("example.test", "r-4"))  # never raises


def test_dmarc_reports_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dmarc", "reports", "example.test", "--data-dir", str(tmp_path)]) == 0
    assert "no DMARC aggregate reports" in capsys.readouterr().out
    s = DmarcStore(tmp_path / "dmarc.sqlite3")
    ReportIntake(s, lambda d: True, ManualClock(T0))("a@example.test", _report_mail("example.test"))
    s.record(observation())
    s.close()
    assert main(["dmarc", "reports", "example.test", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "reporter", "period", "(UTC)", "source", "count", "disposition", "dkim", "spf", "from"
    ]  # fmt: skip
    assert "google.com" in lines[1] and "2026-01-01 00:00 - 2026-01-02 00:00" in lines[1]
    assert "198.51.100.9" in out and "reject" in out
    assert lines[-1] == "1 report(s), 9 message(s), 7 with aligned SPF or DKIM"
    assert main(["dmarc", "reports", "example.test", "--json", "--data-dir", str(tmp_path)]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["org_name"] == "google.com" and len(report["rows"]) == 2
    assert main(["dmarc", "pending", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "bank.example\t1\n"


def test_dmarc_sent_and_flush_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeDNS() as fdns:
        fdns.add_txt("bank.example._report._dmarc.vendor.example", "v=DMARC1")
        conf = tmp_path / "mailspec.toml"
        conf.write_text(
            f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
            f'[dns]\nnameservers = ["{fdns.nameserver}"]\ntimeout = "2s"\n'
        )
        run = ["--config", str(conf)]
        assert main(["dmarc", "sent", *run]) == 0
        assert capsys.readouterr().out == "no DMARC aggregate reports sent\n"
        s = DmarcStore(tmp_path / "var" / "dmarc.sqlite3")
        rua = (
            "v=DMARC1; p=none; "
            "rua=mailto:agg@bank.example,mailto:x@vendor.example,mailto:y@z.example"
        )
        s.record(observation(record=rua, when=time.time()))
        s.record(observation(record=rua, when=time.time(), spf=SpfResult.FAIL))
        s.close()
        # Not waiting for the day to end: the open period is closed and sent now.
        assert main(["dmarc", "flush", *run]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("bank.example: 2 message(s) -> agg@bank.example (")
        assert "y@z.example (not sent: no bank.example._report._dmarc.z.example" in out[0]
        assert out[1].startswith("1 report(s), 2 queued (no running server")
    spool = Spool(tmp_path / "var" / "spool", ManualClock())
    entries = spool.entries()
    assert sorted(r.address for e in entries for r in e.recipients) == [
        "agg@bank.example",
        "x@vendor.example",
    ]
    assert main(["dmarc", "sent", "--domain", "bank.example", *run]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["domain", "period", "(UTC)", "messages", "pass", "fail", "rua"]
    assert lines[1].split()[0] == "bank.example" and lines[1].split()[6:9] == ["2", "1", "1"]
    assert main(["dmarc", "sent", "--domain", "other.example", *run]) == 0
    assert capsys.readouterr().out == "no DMARC aggregate reports sent about other.example\n"
    assert main(["dmarc", "sent", "--json", *run]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["policy_domain"] == "bank.example" and report["failed"] == 1
    assert {d["qid"] for d in report["destinations"] if d["qid"]} == {e.qid for e in entries}
    assert main(["dmarc", "sent", "--domain", "not a domain", *run]) == 2
    assert main(["dmarc", "flush", *run]) == 0  # nothing left: nothing sent twice
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 report(s), 0 queued")
    with conf.open("a") as f:
        f.write("[dmarc]\nreports = false\n")
    assert main(["dmarc", "flush", *run]) == 2
    assert "dmarc.reports is off" in capsys.readouterr().err
    assert len(spool.entries()) == 2


# -- through the reference ---------------------------------------------------------------------


def test_reference_reports_and_keeps_reports(tmp_path: Path) -> None:
    """Mail from a domain asking for reports; a day later the report is at its MX. A report
    mailed to us is delivered and kept."""
    clock = ManualClock()
    with FakeInternet(clock=clock) as net:
        net.dns.spf("sender.example", "v=spf1 ip4:127.0.0.0/8 -all")
        net.dns.dmarc("sender.example", "v=DMARC1; p=reject; rua=mailto:dmarc@gmail.test")
        net.dns.add_txt("sender.example._report._dmarc.gmail.test", "v=DMARC1")
        ref = ReferenceServer(
            tmp_path / "var",
            clock=clock,
            nameservers=[net.nameserver],
            overrides={
                "relay.port": net.smtp_port,
                "relay.source_addresses": ["127.0.1.0/24"],
                "dns.timeout": "2s",
            },
        ).start()
        try:
            ref.add_domain("example.test")
            ref.add_user("alice@example.test", "pw")
            # One of the two messages is DKIM-signed (selector "s1"), the other not.
            (key,) = KeyStore(tmp_path / "keys").generate(
                "sender.example", "s1", ("ed25519-sha256",)
            )
            net.dns.add_txt(key.record_name, key.public_record())
            with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
                for i in range(2):
                    plain = f"From: news@sender.example\r\nSubject: {i}\r\n\r\nhi\r\n".encode()
                    signed = dkim.sign(plain, [key], now=clock.now()) + plain if i else plain
                    s.sendmail("news@sender.example", ["alice@example.test"], signed)
                s.sendmail(
                    "dmarc@google.test", ["alice@example.test"], _report_mail("example.test")
                )
            ref.wait_delivered()
            assert len(ref.mailbox_messages("alice@example.test")) == 3
            assert [r["report_id"] for r in ref.dmarc_reports("example.test")] == ["r-1"]
            clock.advance(DAY)
            gmail = net.mx["gmail"]
            deadline = time.monotonic() + 10
            while not gmail.deliveries:
                assert time.monotonic() < deadline, "no report reached gmail.test"
                time.sleep(0.02)
            (d,) = gmail.deliveries
            assert d.rcpt_tos == ("dmarc@gmail.test",)
            assert d.mail_from == "dmarc-reports@mail.example.test"
            (part,) = d.message.iter_attachments()
            fb = parse(gzip.decompress(part.get_payload(decode=True)))
            assert fb.policy.domain == "sender.example" and fb.messages == 2
            name = f"mail.example.test!sender.example!{fb.begin}!{fb.end}.xml.gz"  # 7.2.1.1
            assert part.get_filename() == name
            assert (fb.org_name, fb.email) == (
                "mail.example.test",
                "dmarc-reports@mail.example.test",
            )
            assert fb.end - fb.begin == DAY and fb.policy.p == "reject"
            rows = {r.dkim: r for r in fb.rows}
            assert set(rows) == {"pass", "fail"}  # aligned DKIM in one row, not in the other
            assert rows["pass"].dkim_results == (DkimAuth("sender.example", key.selector, "pass"),)
            assert rows["fail"].dkim_results == ()
            for row in fb.rows:
                assert (row.count, row.spf, row.disposition, row.header_from) == (
                    1,
                    "pass",
                    "none",
                    "sender.example",
                )
                assert row.spf_results == (SpfAuth("sender.example", "mfrom", "pass"),)
                assert row.source_ip == "127.0.0.1"
        finally:
            ref.stop()
    assert gzipped(render(fb))[:2] == b"\x1f\x8b"


def test_no_reports_about_reports(tmp_path: Path) -> None:
    """Reports, and mail to our report address, never make us send a report; counted when
    their domain gets one anyway."""
    clock = ManualClock()
    with FakeInternet(clock=clock) as net:
        for domain in ("sender.example", "reporter.example", "replier.example"):
            net.dns.spf(domain, "v=spf1 ip4:127.0.0.0/8 -all")
            net.dns.dmarc(domain, "v=DMARC1; p=none; rua=mailto:dmarc@gmail.test")
            net.dns.add_txt(f"{domain}._report._dmarc.gmail.test", "v=DMARC1")
        ref = ReferenceServer(
            tmp_path / "var",
            clock=clock,
            nameservers=[net.nameserver],
            overrides={
                "relay.port": net.smtp_port,
                "relay.source_addresses": ["127.0.1.0/24"],
                "dns.timeout": "2s",
                "dmarc.report_from": "Reports@Example.test",
            },
        ).start()
        try:
            ref.add_domain("example.test")
            for user in ("alice@example.test", "reports@example.test"):
                ref.add_user(user, "pw")
            alice = ["alice@example.test"]
            with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
                s.sendmail(
                    "noreply@reporter.example",
                    alice,
                    _report_mail("example.test", "r-1", "noreply@reporter.example"),
                )
                s.sendmail(  # a reply to one of our reports
                    "someone@replier.example",
                    ["reports@example.test"],
                    b"From: someone@replier.example\r\nSubject: Re: your report\r\n\r\nThanks\r\n",
                )
                s.sendmail(
                    "news@sender.example",
                    alice,
                    b"From: news@sender.example\r\nSubject: news\r\n\r\nhi\r\n",
                )
                s.sendmail(
                    "news@sender.example",
                    alice,
                    _report_mail("example.test", "r-2", "news@sender.example"),
                )
            ref.wait_delivered()
            assert len(ref.app.dmarc_store.observations) == 4
            clock.advance(DAY)
            gmail = net.mx["gmail"]
            deadline = time.monotonic() + 10
            while not gmail.deliveries:
                assert time.monotonic() < deadline, "no report reached gmail.test"
                time.sleep(0.02)
            ref.wait_delivered()
            (d,) = gmail.deliveries
            assert d.mail_from == "reports@example.test"
            (part,) = d.message.iter_attachments()
            fb = parse(gzip.decompress(part.get_payload(decode=True)))
            assert (fb.policy.domain, fb.messages) == ("sender.example", 2)
            assert [r.policy_domain for r in ref.app.admin.dmarc_sent()] == ["sender.example"]
        finally:
            ref.stop()


def test_dmarc_config_keys() -> None:
    from reference import config

    cfg = config.load(None, overrides={"dmarc.report_from": "rua@example.test"})
    assert cfg.dmarc.reports and cfg.dmarc.report_interval == DAY
    assert cfg.dmarc_report_from == "rua@example.test" and cfg.dmarc.org_name == ""
    assert config.load(None).dmarc_report_from == "dmarc-reports@mail.example.test"
    assert config.load(None, overrides={"dmarc.org_name": "Example"}).dmarc.org_name == "Example"
    for key, value, why in [
        ("dmarc.report_interval", "30s", "at least 1m"),
        ("dmarc.report_interval", "daily", "not a duration"),
        ("dmarc.report_from", "nobody", "not an address"),
    ]:
        with pytest.raises(config.ConfigError, match=why) as e:
            config.load(None, overrides={key: value})
        assert e.value.key == key
