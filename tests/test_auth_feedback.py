"""DMARC aggregate report documents: render, parse back, and refuse whatever is not one."""

from __future__ import annotations

import contextlib
import gzip
import io
import zipfile
import zlib
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.auth.feedback import (
    MAX_XML,
    DkimAuth,
    Feedback,
    FeedbackError,
    PolicyPublished,
    Row,
    SpfAuth,
    extract,
    gzipped,
    might_hold_report,
    parse,
    render,
    unpack,
)

SAMPLE = Feedback(
    org_name="google.com",
    email="noreply-dmarc-support@google.com",
    report_id="5717107811868587391",
    begin=1706832000,
    end=1706918399,
    policy=PolicyPublished("example.test", p="reject", sp="quarantine", pct=100),
    rows=(
        Row(
            "192.0.2.10",
            5,
            "none",
            "pass",
            "pass",
            "example.test",
            "example.test",
            dkim_results=(DkimAuth("example.test", "mailspec-rsa", "pass"),),
            spf_results=(SpfAuth("example.test", "mfrom", "pass"),),
        ),
        Row(
            "2001:db8::7",
            2,
            "reject",
            "fail",
            "fail",
            "example.test",
            "spoof.example",
            reasons=(("mailing_list", "looks like a list"),),
            spf_results=(SpfAuth("spoof.example", "mfrom", "softfail"),),
        ),
    ),
)


def test_round_trip_xml_gzip_zip() -> None:
    xml = render(SAMPLE)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<feedback>')
    assert parse(xml) == SAMPLE
    assert parse(gzipped(xml)) == SAMPLE
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("google.com!example.test!1706832000!1706918399.xml", xml)
    assert parse(buf.getvalue()) == SAMPLE
    assert Feedback.from_json(SAMPLE.to_json()) == SAMPLE
    assert SAMPLE.messages == 7


# A report as large receivers write them (elements they add, whitespace, no declaration).
FOREIGN = b"""<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <version>1.0</version>
  <report_metadata>
    <org_name>Outlook.com</org_name>
    <email>dmarcreport@microsoft.com</email>
    <report_id>  e0b9c5e5a5f14e9f  </report_id>
    <date_range><begin>1767225600</begin><end>1767312000</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>Example.TEST</domain><adkim>s</adkim><aspf>r</aspf><p>quarantine</p>
    <pct>50</pct><np>reject</np>
  </policy_published>
  <record>
    <row><source_ip>198.51.100.25</source_ip><count>12</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>pass</spf>
        <reason><type>local_policy</type></reason></policy_evaluated></row>
    <identifiers><envelope_to>outlook.test</envelope_to><envelope_from>example.test</envelope_from>
      <header_from>example.test</header_from></identifiers>
    <auth_results><dkim><domain>other.example</domain><result>fail</result></dkim>
      <spf><domain>example.test</domain><scope>mfrom</scope><result>pass</result></spf></auth_results>
  </record>
</feedback>"""


def test_parse_a_foreign_report() -> None:
    fb = parse(FOREIGN)
    assert fb.org_name == "Outlook.com" and fb.report_id == "e0b9c5e5a5f14e9f"
    assert fb.policy == PolicyPublished("example.test", "s", "r", "quarantine", "quarantine", 50)
    (row,) = fb.rows
    assert (row.source_ip, row.count, row.disposition, row.dkim, row.spf) == (
        "198.51.100.25",
        12,
        "quarantine",
        "fail",
        "pass",
    )
    assert row.reasons == (("local_policy", ""),) and row.envelope_to == "outlook.test"
    assert row.aligned


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "well-formed"),
        (b"<feedback>", "well-formed"),
        (b"<other/>", "root element"),
        (b"<feedback/>", "report_metadata"),
        (
            b'<!DOCTYPE f [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><feedback>&b;</feedback>',
            "document type",
        ),
        (
            b'<!DOCTYPE f SYSTEM "file:///etc/passwd"><feedback/>',
            "document type",
        ),
        (b"<a>" * 20 + b"</a>" * 20, "deep"),
        (b"\x1f\x8b" + b"not gzip", "gzip"),
        (b"PK\x03\x04" + b"\0" * 40, "zip"),
    ],
)
def test_bad_input_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(FeedbackError, match=why):
        parse(data)


def _metadata_without(tag: str) -> bytes:
    xml = render(SAMPLE)
    start = xml.index(f"<{tag}>".encode())
    end = xml.index(f"</{tag}>".encode()) + len(tag) + 3
    return xml[:start] + xml[end:]


@pytest.mark.parametrize("tag", ["report_id", "date_range", "org_name", "header_from"])
def test_required_elements(tag: str) -> None:
    with pytest.raises(FeedbackError, match=tag if tag != "date_range" else "begin"):
        parse(_metadata_without(tag))


def test_bad_values_are_refused() -> None:
    xml = render(SAMPLE)
    with pytest.raises(FeedbackError, match="source_ip"):
        parse(xml.replace(b"192.0.2.10", b"not-an-ip"))
    with pytest.raises(FeedbackError, match="count"):
        parse(xml.replace(b"<count>5</count>", b"<count>-5</count>"))
    with pytest.raises(FeedbackError, match="ends before"):
        parse(xml.replace(b"<end>1706918399</end>", b"<end>1</end>"))


def test_decompression_bombs_are_bounded() -> None:
    # 17 MiB of zeros inflates past the limit from a few kilobytes.
    big = b"<feedback>" + b" " * (MAX_XML + 1024) + b"</feedback>"
    with pytest.raises(FeedbackError, match="inflates beyond"):
        parse(gzip.compress(big, compresslevel=9))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.xml", big)
    with pytest.raises(FeedbackError, match="inflates beyond"):
        parse(buf.getvalue())
    assert len(zlib.compress(big)) < MAX_XML // 100


def test_unpack_leaves_plain_xml() -> None:
    assert unpack(b"<feedback/>") == b"<feedback/>"


def _mail(payload: bytes, subtype: str, filename: str, *, single: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = "noreply-dmarc-support@google.com"
    msg["To"] = "postmaster@example.test"
    msg["Subject"] = "Report domain: example.test Submitter: google.com Report-ID: 1"
    if single:  # Google's style: the whole message is the zip file
        msg.set_content(payload, maintype="application", subtype=subtype, filename=filename)
    else:
        msg.set_content("A report.\n")
        msg.add_attachment(payload, maintype="application", subtype=subtype, filename=filename)
    return msg.as_bytes()


def test_extract_from_mail() -> None:
    xml = render(SAMPLE)
    assert extract(_mail(gzipped(xml), "gzip", "r.xml.gz")) == [SAMPLE]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("r.xml", xml)
    assert extract(_mail(buf.getvalue(), "zip", "r.zip", single=True)) == [SAMPLE]
    assert extract(_mail(xml, "xml", "r.xml")) == [SAMPLE]
    assert extract(b"From: a@b\r\n\r\nhello\r\n") == []
    assert extract(_mail(b"garbage", "gzip", "r.xml.gz")) == []
    assert might_hold_report(_mail(b"x", "gzip", "r.xml.gz"))
    assert not might_hold_report(b"From: a@b\r\nSubject: lunch\r\n\r\nsee you\r\n")
    # Written in capitals, the types and names still count.
    assert might_hold_report(b"CONTENT-TYPE: APPLICATION/GZIP\r\n\r\nx")
    assert might_hold_report(b"Content-Disposition: attachment; filename=R.XML\r\n\r\nx")
    assert not might_hold_report(b"Subject: xml and zip\r\n\r\nno file here\r\n")


# -- properties (STYLE.md 4) -----------------------------------------------------------------

_names = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){1,3}", fullmatch=True)
_text = st.text(
    alphabet=st.characters(
        categories=("L", "N", "P", "S"), max_codepoint=0x2FF, exclude_characters="<>&"
    ),
    min_size=1,
    max_size=40,
)
_ips = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
_rows = st.builds(
    Row,
    source_ip=_ips,
    count=st.integers(0, 10**9),
    disposition=st.sampled_from(["none", "quarantine", "reject"]),
    dkim=st.sampled_from(["pass", "fail"]),
    spf=st.sampled_from(["pass", "fail"]),
    header_from=_names,
    envelope_from=st.one_of(st.just(""), _names),
    envelope_to=st.one_of(st.just(""), _names),
    reasons=st.lists(
        st.tuples(st.sampled_from(["forwarded", "sampled_out", "mailing_list"]), st.just("")),
        max_size=2,
    ).map(tuple),
    dkim_results=st.lists(
        st.builds(
            DkimAuth,
            _names,
            st.from_regex(r"[a-z0-9-]{1,10}", fullmatch=True),
            st.sampled_from(["pass", "fail", "policy", "temperror", "permerror"]),
        ),
        max_size=3,
    ).map(tuple),
    spf_results=st.lists(
        st.builds(
            SpfAuth,
            _names,
            st.sampled_from(["mfrom", "helo"]),
            st.sampled_from(["none", "pass", "fail", "softfail", "neutral"]),
        ),
        min_size=1,
        max_size=2,
    ).map(tuple),
)
_feedback = st.builds(
    Feedback,
    org_name=_text,
    email=_text,
    report_id=_text,
    begin=st.integers(0, 2**31),
    end=st.just(2**31 + 1),
    policy=st.builds(
        PolicyPublished,
        _names,
        st.sampled_from(["r", "s"]),
        st.sampled_from(["r", "s"]),
        st.sampled_from(["none", "quarantine", "reject"]),
        st.sampled_from(["none", "quarantine", "reject"]),
        st.integers(0, 100),
        st.sampled_from(["0", "1", "d:s"]),
    ),
    rows=st.lists(_rows, max_size=4).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(_feedback)
def test_parse_render_round_trip(fb: Feedback) -> None:
    assert parse(render(fb)) == fb
    assert parse(gzipped(render(fb))) == fb


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_no_bytes_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(FeedbackError):
        parse(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_no_mangled_report_crashes_the_parser(data: st.DataObject) -> None:
    xml = bytearray(render(SAMPLE))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(xml) - 1))
        xml[i] = data.draw(st.integers(0, 255))
    for raw in (bytes(xml), gzipped(bytes(xml))):
        with contextlib.suppress(FeedbackError):
            parse(raw)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["gzip", "zip", "xml", "octet-stream"]))
def test_no_attachment_crashes_extract(payload: bytes, subtype: str) -> None:
    assert isinstance(extract(_mail(payload, subtype, "r.xml.gz")), list)


def _zipped(xml: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("report.xml", xml)
    return buf.getvalue()


CONTAINERS = [gzipped(render(SAMPLE)), _zipped(render(SAMPLE))]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CONTAINERS), st.data())
def test_no_mangled_container_crashes_the_parser(container: bytes, data: st.DataObject) -> None:
    raw = bytearray(container)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    with contextlib.suppress(FeedbackError):
        parse(bytes(raw[:cut]))
