"""RFC 7489 6.2, 7.1, 7.2 and Appendix C: DMARC aggregate reports, sent and received.

Sent: a made-up domain publishes ``rua=`` addresses at fake providers; the suite sends it
mail through the target's MX, moves the target's clock by 24 hours and reads what the
providers' fake MXs received. Everything in a report is checked with the standard library
(gzip, xml.etree), never with the target's code. Another domain only mails in a report of
its own: it must get none back (reports about reports would loop between reporters). The
target shows what it sent (admin capability ``dmarc_sent``). Received: the suite mails a
report about the target's domain to its account and asks the target (admin capability
``dmarc_reports``) what it kept.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import gzip
import ipaddress
import re
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Any

import pytest

from conformance import not_applicable, requirement
from conformance.smtp_client import Reply, SMTPClient
from conformance.target import Target
from conformance.tests.test_auth_inbound import find_message

DAY = 86400.0


def token() -> str:
    return secrets.token_hex(5)


def send(target: Target, sender: str, rcpt: str, message: bytes) -> Reply:
    ep = target.endpoint("smtp")
    client = SMTPClient.connect(
        ep.host,
        ep.port,
        timeout=target.timeout,
        tls=target.ssl_context() if ep.implicit_tls else None,
        server_hostname=target.server_name(ep),
    )
    try:
        client.ehlo().expect(250, doing="EHLO")
        client.mail(sender).expect(250, doing=f"MAIL FROM:<{sender}>")
        client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}>")
        return client.data(message)
    finally:
        with contextlib.suppress(Exception):
            client.quit()
        client.close()


def message(from_: str, to: str, subject: str) -> bytes:
    return (
        f"From: {from_}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{token()}@conformance.test>\r\n"
        "\r\nHello from the conformance suite.\r\n"
    ).encode()


def report_parts(data: bytes) -> tuple[Message, list[Message]]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return msg, [p for p in msg.walk() if not p.is_multipart()]


def gzip_part(data: bytes) -> Message:
    _, parts = report_parts(data)
    found = [p for p in parts if p.get_content_type() == "application/gzip"]
    assert found, f"no application/gzip part in {[p.get_content_type() for p in parts]}"
    return found[0]


def feedback_xml(data: bytes) -> ET.Element:
    payload = gzip_part(data).get_payload(decode=True)
    assert isinstance(payload, bytes)
    return ET.fromstring(gzip.decompress(payload))


@dataclass
class Story:
    """What one day of mail from a reporting domain came to at the fake providers."""

    domain: str
    sent: int
    passed: int
    good: str  # the authorized rua= address
    outsider: str  # a rua= address that never agreed (RFC 7489 7.1)
    reports: list[bytes] = field(default_factory=list)  # at the authorized address
    unauthorized: list[bytes] = field(default_factory=list)
    too_small: list[bytes] = field(default_factory=list)
    about_reports: list[bytes] = field(default_factory=list)  # to a domain that only reported


def _deliveries(mx: Any, rcpt: str) -> list[bytes]:
    return [d.data for d in mx.deliveries if rcpt in d.rcpt_tos]


@pytest.fixture(scope="module")
def story(target: Target) -> Story:
    """Three messages from a domain asking for reports, then a day of the target's clock."""
    target.require("clock", "fake-dns")
    net = target.fake_internet
    if net is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    assert target.clock is not None
    dns = net.dns
    gmail, outlook = net.providers["gmail"], net.providers["outlook"]
    t = token()
    domain = f"reports{t}.example"
    good = f"dmarc-{t}@{gmail.domain}"
    unauthorized = f"dmarc-{t}@{outlook.domain}"
    small = f"small-{t}@{gmail.domain}"
    reporter = f"reporter{t}.example"  # sends nothing but an aggregate report of its own
    reporter_rua = f"loop-{t}@{gmail.domain}"
    names = [domain, f"_dmarc.{domain}", f"{domain}._report._dmarc.{gmail.domain}"]
    names += [reporter, f"_dmarc.{reporter}", f"{reporter}._report._dmarc.{gmail.domain}"]
    try:
        dns.spf(reporter, "v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all")
        dns.dmarc(reporter, f"v=DMARC1; p=none; rua=mailto:{reporter_rua}")
        dns.add_txt(f"{reporter}._report._dmarc.{gmail.domain}", "v=DMARC1")
        dns.spf(domain, "v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all")  # any client passes SPF
        # Unauthorized first: were it sent, it would be queued before the good one.
        dns.dmarc(
            domain,
            f"v=DMARC1; p=none; rua=mailto:{unauthorized},mailto:{small}!100,mailto:{good}",
        )
        # RFC 7489 7.1: gmail agrees to receive this domain's reports; outlook does not.
        dns.add_txt(f"{domain}._report._dmarc.{gmail.domain}", "v=DMARC1")
        rcpt = target.account.address
        for i in range(2):  # aligned SPF pass
            send(target, f"news@{domain}", rcpt, message(f"news@{domain}", rcpt, f"r{i} {t}"))
        # Envelope elsewhere, no DKIM: DMARC fails; p=none delivers it all the same.
        other = f"bounce@elsewhere{t}.example"
        send(target, other, rcpt, message(f"news@{domain}", rcpt, f"r2 {t}")).expect(
            250, doing="DATA"
        )
        sender = f"noreply-dmarc@{reporter}"
        report = report_mail(target.domain, reporter, f"loop-{t}", sender, rcpt)
        send(target, sender, rcpt, report).expect(250, doing="DATA")
        target.clock.advance(DAY)
        found = Story(domain, sent=3, passed=2, good=good, outsider=unauthorized)
        deadline = time.monotonic() + max(15.0, target.timeout)
        while not found.reports and time.monotonic() < deadline:
            time.sleep(0.05)
            found.reports = _deliveries(gmail.mx, good)
        time.sleep(0.5)  # what else was queued in the same run has reached its MX by now
        found.unauthorized = _deliveries(outlook.mx, unauthorized)
        found.too_small = _deliveries(gmail.mx, small)
        found.about_reports = _deliveries(gmail.mx, reporter_rua)
        return found
    finally:
        for name in names:
            dns.remove(name)


def _one_report(story: Story) -> bytes:
    assert story.reports, f"no aggregate report for {story.domain} reached its rua address"
    return story.reports[0]


@requirement(
    "PLATFORM",
    "dmarc.reports",
    "MUST",
    "after a day, an aggregate report counting the messages evaluated reaches the rua= address",
)
def test_report_is_sent_after_a_day(story: Story) -> None:
    root = feedback_xml(_one_report(story))
    assert root.tag == "feedback", root.tag
    assert root.findtext("policy_published/domain") == story.domain
    assert root.findtext("policy_published/p") == "none"
    records = root.findall("record")
    ours = [r for r in records if r.findtext("identifiers/header_from") == story.domain]
    assert sum(int(r.findtext("row/count") or 0) for r in ours) == story.sent, ET.tostring(root)
    passed = sum(
        int(r.findtext("row/count") or 0)
        for r in ours
        if r.findtext("row/policy_evaluated/spf") == "pass"
    )
    assert passed == story.passed, ET.tostring(root)
    for r in ours:
        ipaddress.ip_address(r.findtext("row/source_ip") or "")
        assert r.findtext("row/policy_evaluated/disposition") == "none"


@requirement(
    "RFC7489",
    "appendix-C",
    "MUST",
    "the report follows the feedback schema: metadata, date range, policy published, records",
)
def test_report_follows_the_schema(story: Story) -> None:
    root = feedback_xml(_one_report(story))
    for path in ("report_metadata/org_name", "report_metadata/email", "report_metadata/report_id"):
        assert (root.findtext(path) or "").strip(), f"{path} is missing or empty"
    begin = int(root.findtext("report_metadata/date_range/begin") or -1)
    end = int(root.findtext("report_metadata/date_range/end") or -1)
    assert 0 <= begin < end, (begin, end)
    for tag in ("domain", "p"):
        assert root.find(f"policy_published/{tag}") is not None, f"policy_published/{tag}"
    for rec in root.findall("record"):
        for path in (
            "row/source_ip",
            "row/count",
            "row/policy_evaluated/disposition",
            "row/policy_evaluated/dkim",
            "row/policy_evaluated/spf",
            "identifiers/header_from",
            "auth_results/spf/domain",
            "auth_results/spf/result",
        ):
            assert rec.find(path) is not None, f"record without {path}"
        assert rec.findtext("row/policy_evaluated/dkim") in ("pass", "fail")
        assert rec.findtext("row/policy_evaluated/disposition") in ("none", "quarantine", "reject")


@requirement(
    "RFC7489",
    "7.2.1.1",
    "MUST",
    "the report is gzipped XML in a MIME part of type application/gzip",
)
def test_report_is_gzipped_xml(story: Story) -> None:
    part = gzip_part(_one_report(story))
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload[:2] == b"\x1f\x8b", "not gzip data"
    assert gzip.decompress(payload).lstrip().startswith(b"<?xml"), "not an XML document"


@requirement(
    "RFC7489",
    "7.2.1.1",
    "SHOULD",
    "the report is named receiver!domain!begin!end.xml.gz, its Subject is "
    "'Report Domain: … Submitter: … Report-ID: <…>'",
)
def test_report_names_and_subject(story: Story) -> None:
    data = _one_report(story)
    msg, _ = report_parts(data)
    root = feedback_xml(data)
    begin = root.findtext("report_metadata/date_range/begin")
    end = root.findtext("report_metadata/date_range/end")
    filename = gzip_part(data).get_filename() or ""
    m = re.fullmatch(r"([A-Za-z0-9.-]+)!([A-Za-z0-9.-]+)!(\d+)!(\d+)(?:![^.]+)?\.xml\.gz", filename)
    assert m, f"file name {filename!r}"
    assert (m.group(2), m.group(3), m.group(4)) == (story.domain, begin, end), filename
    subject = str(msg["Subject"])
    m2 = re.fullmatch(
        r"Report\s+Domain:\s+(\S+)\s+Submitter:\s+(\S+)\s+Report-ID:\s*<([^>]+)>", subject
    )
    assert m2, f"Subject {subject!r}"
    assert m2.group(1) == story.domain and m2.group(2) == m.group(1), subject


@requirement(
    "RFC7489",
    "7.1",
    "MUST",
    "no report goes to an rua= address outside the domain's organization that did not "
    "publish <domain>._report._dmarc",
)
def test_unauthorized_destination_gets_nothing(story: Story) -> None:
    _one_report(story)  # the run happened
    assert story.unauthorized == [], "a report went to a destination that never agreed to it"


@requirement(
    "RFC7489",
    "6.2",
    "MUST",
    "no report goes to an rua= address whose size limit (!size) it exceeds",
)
def test_size_limit_is_respected(story: Story) -> None:
    _one_report(story)
    assert story.too_small == [], "a report larger than the !100 limit was sent"


@requirement(
    "PLATFORM",
    "dmarc.reports-loop",
    "MUST",
    "an aggregate report mailed in is never by itself the reason for a report back to its "
    "domain (two reporters would trade reports about reports forever)",
)
def test_no_report_about_a_report(story: Story) -> None:
    _one_report(story)  # the run happened
    assert story.about_reports == [], "a report was sent about mail that was itself a report"


@requirement(
    "PLATFORM",
    "dmarc.reports-sent",
    "MUST",
    "the reports sent are kept and shown: the period, the messages counted, passed and "
    "failed, and what became of each rua= address",
)
def test_reports_sent_are_shown(target: Target, story: Story) -> None:
    reader = getattr(target.admin, "dmarc_sent", None)
    if reader is None:
        not_applicable(f"target {target.name!r} does not show the DMARC reports it sent")
    root = feedback_xml(_one_report(story))
    report_id = root.findtext("report_metadata/report_id")
    kept = [r for r in reader(story.domain) if r.get("report_id") == report_id]
    assert kept, f"report {report_id} reached its rua= address but is not shown"
    shown = kept[0]
    assert (shown["messages"], shown["passed"]) == (story.sent, story.passed), shown
    assert shown["failed"] == story.sent - story.passed, shown
    assert str(shown["begin"]) == root.findtext("report_metadata/date_range/begin"), shown
    by_rua = {d["rua"]: d for d in shown["destinations"]}
    assert by_rua[story.good]["qid"] and not by_rua[story.good]["skipped"], by_rua
    assert by_rua[story.outsider]["skipped"] and not by_rua[story.outsider]["qid"], by_rua


# -- reports received ------------------------------------------------------------------------


def _report_xml(domain: str, reporter: str, report_id: str) -> bytes:
    root = ET.Element("feedback")
    meta = ET.SubElement(root, "report_metadata")
    for tag, text in (("org_name", reporter), ("email", f"noreply@{reporter}")):
        ET.SubElement(meta, tag).text = text
    ET.SubElement(meta, "report_id").text = report_id
    dr = ET.SubElement(meta, "date_range")
    ET.SubElement(dr, "begin").text = "1767225600"
    ET.SubElement(dr, "end").text = "1767311999"
    pp = ET.SubElement(root, "policy_published")
    for tag, text in (("domain", domain), ("p", "reject"), ("sp", "reject"), ("pct", "100")):
        ET.SubElement(pp, tag).text = text
    for ip, count, verdict in (("192.0.2.10", 5, "pass"), ("198.51.100.7", 2, "fail")):
        rec = ET.SubElement(root, "record")
        row = ET.SubElement(rec, "row")
        ET.SubElement(row, "source_ip").text = ip
        ET.SubElement(row, "count").text = str(count)
        pe = ET.SubElement(row, "policy_evaluated")
        ET.SubElement(pe, "disposition").text = "none" if verdict == "pass" else "reject"
        ET.SubElement(pe, "dkim").text = verdict
        ET.SubElement(pe, "spf").text = verdict
        ids = ET.SubElement(rec, "identifiers")
        ET.SubElement(ids, "header_from").text = domain
        auth = ET.SubElement(rec, "auth_results")
        spf = ET.SubElement(auth, "spf")
        ET.SubElement(spf, "domain").text = domain
        ET.SubElement(spf, "result").text = verdict
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)


def report_mail(about: str, reporter: str, report_id: str, sender: str, to: str) -> bytes:
    """An aggregate report as providers mail them (RFC 7489 7.2.1.1)."""
    data = gzip.compress(_report_xml(about, reporter, report_id))
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Report Domain: {about} Submitter: {reporter} Report-ID: <{report_id}>"
    msg["Date"] = "Fri, 02 Jan 2026 00:00:00 +0000"
    msg["Message-ID"] = f"<{report_id}@{reporter}>"
    msg.set_content("An aggregate report from the conformance suite.\n")
    filename = f"{reporter}!{about}!1767225600!1767311999.xml.gz"
    msg.add_attachment(data, maintype="application", subtype="gzip", filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


@requirement(
    "PLATFORM",
    "dmarc.reports-received",
    "MUST",
    "an aggregate report mailed about one of our domains is kept and shown, and still delivered",
)
def test_received_report_is_kept(target: Target) -> None:
    target.require("admin")
    reader = getattr(target.admin, "dmarc_reports", None)
    if reader is None:
        not_applicable(f"target {target.name!r} does not show the DMARC reports it received")
    acc = target.account
    t = token()
    reporter = f"reporter{t}.example"
    report_id = f"conformance-{t}"
    sender = f"noreply-dmarc@{reporter}"
    raw = report_mail(target.domain, reporter, report_id, sender, acc.address)
    send(target, sender, acc.address, raw).expect(250, doing="DATA")
    find_message(target, acc, report_id)  # delivered to the mailbox as well
    deadline = time.monotonic() + max(10.0, target.timeout)
    while True:
        kept = [r for r in reader(target.domain) if r.get("report_id") == report_id]
        if kept or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert kept, f"report {report_id} was delivered but not kept"
    rows = {r["source_ip"]: r for r in kept[0]["rows"]}
    assert rows["192.0.2.10"]["count"] == 5 and rows["198.51.100.7"]["count"] == 2, rows
    assert rows["198.51.100.7"]["disposition"] == "reject", rows
    assert kept[0]["org_name"] == reporter
