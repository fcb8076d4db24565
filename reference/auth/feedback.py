"""DMARC aggregate report documents (RFC 7489 7.2 and Appendix C): values, XML out, safe XML in.

Pure: bytes in, a :class:`Feedback` value or a :class:`FeedbackError` out, never anything
else, whatever the input (a report is mail from anyone). Reports arrive as XML, gzip or
zip; each layer is bounded: compressed members are inflated up to ``MAX_XML`` bytes, and
the XML is read by expat with document type declarations refused outright, so no entity
can be declared, expanded or fetched (what defusedxml's ``forbid_dtd`` does, without the
dependency: defusedxml 0.7.1 dates from 2021 and wraps the same expat), with limits on
depth and element count.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import io
import ipaddress
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from email.message import Message
from typing import Any

__all__ = [
    "MAX_XML",
    "DkimAuth",
    "Feedback",
    "FeedbackError",
    "PolicyPublished",
    "Row",
    "SpfAuth",
    "extract",
    "gzipped",
    "is_report_subject",
    "might_hold_report",
    "parse",
    "render",
    "unpack",
]

MAX_XML = 16 * 1024 * 1024  # inflated report size we read; real ones are kilobytes
MAX_ELEMENTS = 500_000
MAX_DEPTH = 12  # the schema nests 5 deep
MAX_ROWS = 100_000
MAX_TEXT = 255  # characters kept of any one text value

DISPOSITIONS = ("none", "quarantine", "reject")
OVERRIDES = ("forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy")


class FeedbackError(ValueError):
    """Not a DMARC aggregate report we can read; the message says why."""


@dataclass(frozen=True)
class DkimAuth:
    """DKIMAuthResultType: one signature's verdict (RFC 8601 results)."""

    domain: str
    selector: str = ""
    result: str = "none"


@dataclass(frozen=True)
class SpfAuth:
    """SPFAuthResultType; scope is "mfrom" or "helo"."""

    domain: str
    scope: str = "mfrom"
    result: str = "none"


@dataclass(frozen=True)
class Row:
    """One record: messages from one source with the same identifiers and results."""

    source_ip: str
    count: int
    disposition: str  # what the receiver did: none, quarantine, reject
    dkim: str  # policy_evaluated: aligned DKIM "pass" or "fail"
    spf: str  # policy_evaluated: aligned SPF "pass" or "fail"
    header_from: str
    envelope_from: str = ""
    envelope_to: str = ""
    reasons: tuple[tuple[str, str], ...] = ()  # PolicyOverrideReason (type, comment)
    dkim_results: tuple[DkimAuth, ...] = ()
    spf_results: tuple[SpfAuth, ...] = ()

    @property
    def aligned(self) -> bool:
        return "pass" in (self.dkim, self.spf)


@dataclass(frozen=True)
class PolicyPublished:
    """PolicyPublishedType: the record the receiver found (RFC 7489 6.3 tags)."""

    domain: str
    adkim: str = "r"
    aspf: str = "r"
    p: str = "none"
    sp: str = "none"
    pct: int = 100
    fo: str = "0"


@dataclass(frozen=True)
class Feedback:
    """One aggregate report: who reports, about which policy, for which period."""

    org_name: str
    email: str
    report_id: str
    begin: int
    end: int
    policy: PolicyPublished
    rows: tuple[Row, ...] = ()
    extra_contact_info: str = ""
    errors: tuple[str, ...] = ()

    @property
    def messages(self) -> int:
        return sum(r.count for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Feedback:
        rows = tuple(
            Row(
                **{
                    **r,
                    "reasons": tuple(tuple(x) for x in r.get("reasons", ())),
                    "dkim_results": tuple(DkimAuth(**x) for x in r.get("dkim_results", ())),
                    "spf_results": tuple(SpfAuth(**x) for x in r.get("spf_results", ())),
                }
            )
            for r in d.get("rows", ())
        )
        return cls(
            **{
                **d,
                "policy": PolicyPublished(**d["policy"]),
                "rows": rows,
                "errors": tuple(d.get("errors", ())),
            }
        )


# -- rendering (RFC 7489 Appendix C) ---------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | int | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def render(fb: Feedback) -> bytes:
    """The report as an XML document (UTF-8, with declaration), elements in schema order."""
    root = ET.Element("feedback")
    _sub(root, "version", "1.0")
    meta = _sub(root, "report_metadata")
    _sub(meta, "org_name", fb.org_name)
    _sub(meta, "email", fb.email)
    if fb.extra_contact_info:
        _sub(meta, "extra_contact_info", fb.extra_contact_info)
    _sub(meta, "report_id", fb.report_id)
    dr = _sub(meta, "date_range")
    _sub(dr, "begin", fb.begin)
    _sub(dr, "end", fb.end)
    for err in fb.errors:
        _sub(meta, "error", err)
    pp = _sub(root, "policy_published")
    pol = fb.policy
    _sub(pp, "domain", pol.domain)
    _sub(pp, "adkim", pol.adkim)
    _sub(pp, "aspf", pol.aspf)
    _sub(pp, "p", pol.p)
    _sub(pp, "sp", pol.sp)
    _sub(pp, "pct", pol.pct)
    _sub(pp, "fo", pol.fo)
    for r in fb.rows:
        rec = _sub(root, "record")
        row = _sub(rec, "row")
        _sub(row, "source_ip", r.source_ip)
        _sub(row, "count", r.count)
        pe = _sub(row, "policy_evaluated")
        _sub(pe, "disposition", r.disposition)
        _sub(pe, "dkim", r.dkim)
        _sub(pe, "spf", r.spf)
        for kind, comment in r.reasons:
            reason = _sub(pe, "reason")
            _sub(reason, "type", kind)
            if comment:
                _sub(reason, "comment", comment)
        ids = _sub(rec, "identifiers")
        if r.envelope_to:
            _sub(ids, "envelope_to", r.envelope_to)
        _sub(ids, "envelope_from", r.envelope_from)
        _sub(ids, "header_from", r.header_from)
        auth = _sub(rec, "auth_results")
        for d in r.dkim_results:
            el = _sub(auth, "dkim")
            _sub(el, "domain", d.domain)
            if d.selector:
                _sub(el, "selector", d.selector)
            _sub(el, "result", d.result)
        # The schema wants at least one spf element: "none" for the MAIL FROM domain if
        # SPF was not evaluated at all.
        for s in r.spf_results or (SpfAuth(r.envelope_from or r.header_from, "mfrom", "none"),):
            el = _sub(auth, "spf")
            _sub(el, "domain", s.domain)
            _sub(el, "scope", s.scope)
            _sub(el, "result", s.result)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8") + b"\n"


# -- safe parsing ----------------------------------------------------------------------------


def _refuse(what: str) -> Any:
    def handler(*_: Any) -> Any:
        raise FeedbackError(f"{what} not allowed in a report")

    return handler


def _xml_tree(data: bytes) -> ET.Element:
    if len(data) > MAX_XML:
        raise FeedbackError(f"report larger than {MAX_XML} bytes")
    builder = ET.TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    # No DTD at all: without one no entity can be declared, so none can be expanded
    # (billion laughs) or fetched (external entities).
    parser.StartDoctypeDeclHandler = _refuse("a document type declaration")
    parser.EntityDeclHandler = _refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = _refuse("an entity declaration")
    parser.ExternalEntityRefHandler = _refuse("an external entity")
    parser.buffer_text = True
    depth = 0
    count = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, count
        depth += 1
        count += 1
        if depth > MAX_DEPTH:
            raise FeedbackError("elements nested too deep")
        if count > MAX_ELEMENTS:
            raise FeedbackError("too many elements")
        # Namespaces are not processed: drop a prefix ("dmarc:feedback"), keep the name.
        builder.start(name.rpartition(":")[2], {})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(name.rpartition(":")[2])

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        root = builder.close()
    except FeedbackError:
        raise
    except xml.parsers.expat.ExpatError as e:
        raise FeedbackError(f"not well-formed XML: {e}") from None
    except Exception as e:  # e.g. LookupError for an encoding expat does not know
        raise FeedbackError(f"unreadable XML: {type(e).__name__}: {str(e)[:60]}") from None
    return root


def _child(el: ET.Element | None, tag: str) -> ET.Element | None:
    return None if el is None else el.find(tag)


def _text(el: ET.Element | None, tag: str, default: str = "") -> str:
    c = _child(el, tag)
    if c is None or c.text is None:
        return default
    text = re.sub(r"\s+", " ", c.text).strip()
    return text[:MAX_TEXT] if text else default


def _required(el: ET.Element | None, tag: str, where: str) -> str:
    value = _text(el, tag)
    if not value:
        raise FeedbackError(f"{where}/{tag} is missing")
    return value


def _int(el: ET.Element | None, tag: str, where: str, *, low: int, high: int) -> int:
    text = _required(el, tag, where)
    try:
        value = int(text)
    except ValueError:
        raise FeedbackError(f"{where}/{tag} is not an integer: {text[:40]!r}") from None
    if not low <= value <= high:
        raise FeedbackError(f"{where}/{tag} out of range: {value}")
    return value


def _word(value: str, allowed: tuple[str, ...], default: str) -> str:
    v = value.lower()
    return v if v in allowed else default


_DKIM_RESULTS = ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")
_SPF_RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")


def _row(rec: ET.Element) -> Row:
    row = _child(rec, "row")
    ip = _required(row, "source_ip", "record/row")
    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        raise FeedbackError(f"record/row/source_ip is not an address: {ip[:40]!r}") from None
    count = _int(row, "count", "record/row", low=0, high=10**12)
    pe = _child(row, "policy_evaluated")
    reasons = tuple(
        (_text(r, "type", "other").lower(), _text(r, "comment"))
        for r in (pe.findall("reason") if pe is not None else [])
    )
    ids = _child(rec, "identifiers")
    auth = _child(rec, "auth_results")
    dkim = tuple(
        DkimAuth(
            _text(d, "domain").lower(),
            _text(d, "selector"),
            _word(_text(d, "result"), _DKIM_RESULTS, "none"),
        )
        for d in (auth.findall("dkim") if auth is not None else [])
    )
    spf = tuple(
        SpfAuth(
            _text(s, "domain").lower(),
            _word(_text(s, "scope", "mfrom"), ("mfrom", "helo"), "mfrom"),
            _word(_text(s, "result"), _SPF_RESULTS, "none"),
        )
        for s in (auth.findall("spf") if auth is not None else [])
    )
    return Row(
        source_ip=ip,
        count=count,
        disposition=_word(_text(pe, "disposition"), (*DISPOSITIONS, "pass"), "none"),
        dkim=_word(_text(pe, "dkim"), ("pass", "fail"), "fail"),
        spf=_word(_text(pe, "spf"), ("pass", "fail"), "fail"),
        header_from=_required(ids, "header_from", "record/identifiers").lower(),
        envelope_from=_text(ids, "envelope_from").lower(),
        envelope_to=_text(ids, "envelope_to").lower(),
        reasons=reasons[:10],
        dkim_results=dkim[:20],
        spf_results=spf[:20],
    )


def parse(data: bytes) -> Feedback:
    """A report from XML, gzip or zip bytes; FeedbackError for anything else."""
    root = _xml_tree(unpack(data))
    if root.tag != "feedback":
        raise FeedbackError(f"the root element is {root.tag[:40]!r}, not feedback")
    meta = _child(root, "report_metadata")
    if meta is None:
        raise FeedbackError("report_metadata is missing")
    dr = _child(meta, "date_range")
    begin = _int(dr, "begin", "report_metadata/date_range", low=0, high=2**40)
    end = _int(dr, "end", "report_metadata/date_range", low=0, high=2**40)
    if end < begin:
        raise FeedbackError("the date range ends before it begins")
    pp = _child(root, "policy_published")
    domain = _required(pp, "domain", "policy_published").lower().rstrip(".")
    try:
        pct = int(_text(pp, "pct", "100"))
    except ValueError:
        pct = 100
    policy = PolicyPublished(
        domain=domain,
        adkim=_word(_text(pp, "adkim", "r"), ("r", "s"), "r"),
        aspf=_word(_text(pp, "aspf", "r"), ("r", "s"), "r"),
        p=_word(_text(pp, "p", "none"), DISPOSITIONS, "none"),
        sp=_word(_text(pp, "sp", _text(pp, "p", "none")), DISPOSITIONS, "none"),
        pct=min(100, max(0, pct)),
        fo=_text(pp, "fo", "0"),
    )
    records = root.findall("record")
    if len(records) > MAX_ROWS:
        raise FeedbackError(f"more than {MAX_ROWS} records")
    return Feedback(
        org_name=_required(meta, "org_name", "report_metadata"),
        email=_text(meta, "email"),
        report_id=_required(meta, "report_id", "report_metadata"),
        begin=begin,
        end=end,
        policy=policy,
        rows=tuple(_row(r) for r in records),
        extra_contact_info=_text(meta, "extra_contact_info"),
        errors=tuple(_text(e, ".") for e in meta.findall("error"))[:10],
    )


# -- containers ------------------------------------------------------------------------------


def _gunzip(data: bytes) -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, MAX_XML + 1)
    except zlib.error as e:
        raise FeedbackError(f"bad gzip data: {e}") from None
    if len(out) > MAX_XML:
        raise FeedbackError(f"report inflates beyond {MAX_XML} bytes")
    return out


def _unzip(data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = [i for i in z.infolist() if not i.is_dir()]
            xml_members = [i for i in members if i.filename.lower().endswith(".xml")] or members
            if not xml_members:
                raise FeedbackError("empty zip archive")
            info = xml_members[0]
            if info.flag_bits & 0x1:
                raise FeedbackError("encrypted zip member")
            with z.open(info) as f:
                out = f.read(MAX_XML + 1)  # the size in the header may lie: read bounded
    except FeedbackError:
        raise
    except Exception as e:  # BadZipFile, NotImplementedError (method), zlib.error, EOFError...
        raise FeedbackError(f"bad zip archive: {type(e).__name__}: {str(e)[:60]}") from None
    if len(out) > MAX_XML:
        raise FeedbackError(f"report inflates beyond {MAX_XML} bytes")
    return out


def unpack(data: bytes) -> bytes:
    """The XML inside gzip or zip bytes (by their magic numbers); other bytes as they are."""
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data)
    if data[:4] == b"PK\x03\x04":
        return _unzip(data)
    return data


# -- in mail ---------------------------------------------------------------------------------

_REPORT_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/zip",
    "application/x-zip",
    "application/x-zip-compressed",
    "application/xml",
    "text/xml",
    "application/octet-stream",
)
_HINT = re.compile(
    rb"(?i)content-type:[ \t]*(?:application/(?:x-)?(?:gzip|zip|xml|zip-compressed)|text/xml)"
    rb"|\.xml(?:\.gz)?\b|\.zip\b"
)


# RFC 7489 7.2.1.1: "Report Domain: <domain> Submitter: <domain> Report-ID: <id>"; the big
# reporters follow it (Google writes "Report domain:"), so a field this shape is a report.
_REPORT_SUBJECT = re.compile(r"^\s*Report\s+Domain:\s*\S+\s+Submitter:", re.IGNORECASE)


def is_report_subject(subject: str) -> bool:
    """Whether a Subject field is an aggregate report's (RFC 7489 7.2.1.1)."""
    return _REPORT_SUBJECT.match(subject) is not None


def might_hold_report(message: bytes) -> bool:
    """A cheap test before parsing: a part of a type (or a file name) reports come in."""
    # Every hint names xml or zip: most mail has neither, and finding that out is four
    # times cheaper than the case-blind search.
    low = message.lower()
    return (b"xml" in low or b"zip" in low) and _HINT.search(message) is not None


def _candidates(msg: Message) -> Iterator[bytes]:
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if ctype not in _REPORT_TYPES and not filename.endswith((".xml", ".gz", ".zip")):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            yield payload


def extract(message: bytes, *, limit: int = 5) -> list[Feedback]:
    """The aggregate reports a message carries (single part or attached); never raises."""
    if not might_hold_report(message):
        return []
    try:
        msg = email.message_from_bytes(message, policy=email.policy.compat32)
        found: list[Feedback] = []
        for payload in _candidates(msg):
            try:
                found.append(parse(payload))
            except FeedbackError:
                continue
            if len(found) >= limit:
                break
        return found
    except Exception:  # the email package on hostile input: a report we cannot read
        return []


def gzipped(xml: bytes, mtime: int = 0) -> bytes:
    """RFC 7489 7.2.1.1: the XML, gzip-compressed (deterministic: fixed mtime)."""
    return gzip.compress(xml, mtime=mtime)
