"""The spam analyser: one parse of a message, a small rule table, links, phishing and URIBL.

Mechanism only: it turns bytes into a :class:`Score` (the rules that fired, with their
weights); what a score means for the SMTP dialogue is ``reference.policy.spam``'s job.

The rules are data (:data:`RULES`), deliberately few and each tested; this is not
SpamAssassin, whose thousands of rules are tuned against live corpora. Every step is
bounded (bytes parsed, MIME parts walked, text kept, links followed, domains looked up)
and :func:`parse` never raises, whatever the bytes: broken MIME is a fact about the
message (the ``MIME_BROKEN`` rule), never an exception.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.header
import email.message
import email.utils
import functools
import ipaddress
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from io import BytesIO
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.resolver

from reference.auth.psl import PublicSuffixList, default_list
from reference.log import event

__all__ = [
    "BRANDS",
    "GTUBE",
    "GTUBE_JUNK",
    "RULES",
    "Attachment",
    "Hit",
    "Link",
    "Parsed",
    "Rule",
    "Score",
    "UriZone",
    "analyse",
    "extract_urls",
    "host_of",
    "lookalike_of",
    "parse",
    "phishing",
    "registered_domain",
    "uribl",
]

log = logging.getLogger("mailspec.spam")

# -- bounds ------------------------------------------------------------------------------------

MAX_PARSE = 32 << 20  # bytes of a message handed to the email parser (SIZE caps it anyway)
MAX_PARTS = 200  # MIME parts walked
MAX_DEPTH = 20  # MIME nesting followed
MAX_TEXT = 256 << 10  # characters of decoded text (plain and visible HTML) kept
MAX_HTML = 512 << 10  # characters of HTML source parsed
MAX_LINKS = 200  # links kept per message
MAX_ATTACHMENT = 16 << 20  # bytes of one attachment decoded (for zip listings and macros)
MAX_ZIP_NAMES = 500  # names read from a zip's directory
MAX_URIBL_DOMAINS = 20  # distinct registered domains looked up per message

# The Generic Test for Unsolicited Bulk Email: every filter treats it as certain spam.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# Rspamd's "add header" variant: scores exactly the junk threshold (the policy sets the
# weight), so the Junk filing can be tested end to end. It only ever adds score; the
# "no action" variant, which would let anyone bypass the filter, is not honoured.
GTUBE_JUNK = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """A rule that fired: its name, its weight and, for the log, what made it fire."""

    rule: str
    weight: float
    detail: str = ""


@dataclass(frozen=True)
class Score:
    """The rules that fired; the score is their sum."""

    hits: tuple[Hit, ...] = ()

    @property
    def total(self) -> float:
        return round(sum(h.weight for h in self.hits), 2)

    def plus(self, hits: Iterable[Hit]) -> Score:
        return Score(self.hits + tuple(hits))

    @property
    def rules(self) -> list[str]:
        return [h.rule for h in self.hits]

    def summary(self) -> str:
        """``GTUBE=1000,MISSING_DATE=1`` (heaviest first), for log lines."""
        ordered = sorted(self.hits, key=lambda h: -h.weight)
        return ",".join(f"{h.rule}={h.weight:g}" for h in ordered)


@dataclass(frozen=True)
class Link:
    """A link found in the message: where it goes and, for ``<a>``, the text shown for it."""

    url: str
    host: str  # lower case, A-labels; "" when the URL has no usable host
    text: str = ""  # the visible text of an <a> element ("" for a URL in plain text)
    anchor: bool = False


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int  # decoded size (estimated from the encoded size when not decoded)
    data: bytes = b""  # decoded bytes, kept for containers only (zip, OLE), up to a cap


@dataclass(frozen=True)
class Parsed:
    """What the rules look at, extracted in one bounded pass over the message."""

    subject: str = ""
    from_name: str = ""
    from_addr: str = ""
    has_date: bool = False
    has_message_id: bool = False
    received: tuple[str, ...] = ()
    text: str = ""  # text/plain parts
    html_text: str = ""  # the visible text of text/html parts
    has_html: bool = False
    has_plain: bool = False
    images: int = 0
    links: tuple[Link, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, decoded value)
    broken: str = ""  # why the MIME structure could not be followed, if it could not

    @functools.cached_property
    def body(self) -> str:
        """Plain and visible HTML text together (built once: every phrase rule reads it)."""
        return self.text + "\n" + self.html_text

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


# -- parsing -----------------------------------------------------------------------------------


def _decode_header(value: object) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # malformed encoded-words, unknown charsets: keep the raw text
        return str(value)


def _text_of(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(payload, bytes):
        return ""
    payload = payload[: MAX_TEXT * 4]
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("utf-8", "replace")


class _Html(HTMLParser):
    """Visible text and <a href> links of an HTML part; tolerant, bounded by the caller."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.size = 0
        self.anchors: list[tuple[str, str]] = []
        self.images = 0
        self._skip = 0
        self._href: str | None = None
        self._atext: list[str] = []

    def _close_anchor(self) -> None:
        if self._href is not None and len(self.anchors) < MAX_LINKS:
            text = " ".join("".join(self._atext).split())[:300]
            self.anchors.append((self._href, text))
        self._href, self._atext = None, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "a":
            self._close_anchor()
            href = dict(attrs).get("href")
            if href:
                self._href = href.strip()
        elif tag == "img":
            self.images += 1
        elif tag == "form":
            action = dict(attrs).get("action")
            if action and len(self.anchors) < MAX_LINKS:
                self.anchors.append((action.strip(), ""))
        elif tag in ("br", "p", "div", "tr", "li"):
            self.handle_data("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "a":
            self._close_anchor()

    def handle_data(self, data: str) -> None:
        if self._skip or self.size >= MAX_TEXT:
            return
        data = data[: MAX_TEXT - self.size]
        self.size += len(data)
        self.chunks.append(data)
        if self._href is not None:
            self._atext.append(data)

    def close(self) -> None:
        super().close()
        self._close_anchor()


_URL = re.compile(
    r"""(?i)\b(?:(?:https?|ftp)://(?:\[[0-9a-f:.]{2,45}\])?|www\.)[^\s<>"'`{}|\\^\[\]]{0,2000}"""
)
_TRAILING = ".,;:!?)]}'\""
_BARE_PREFIX = re.compile(r"(?i)(?:https?|ftp)://|www\.?")


def extract_urls(text: str, limit: int = MAX_LINKS) -> list[str]:
    """URLs written out in text (``scheme://`` or ``www.``), trailing punctuation removed."""
    found: list[str] = []
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(_TRAILING)
        if _BARE_PREFIX.fullmatch(url):
            continue  # a scheme or "www." with nothing after it
        found.append(url)
        if len(found) >= limit:
            break
    return found


def _idna(host: str) -> str:
    if host.isascii():
        return host.lower()
    labels = []
    for label in host.lower().split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if not label.isascii() else label)
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def host_of(url: str) -> str:
    """The host a URL goes to (lower case, A-labels, no trailing dot); "" if none."""
    u = url.strip()
    if u[:4].lower() == "www.":
        u = "http://" + u
    # Browsers read a backslash as a slash: http://bank.example\@evil.test goes to bank.example.
    u = u.replace("\\", "/")
    try:
        parts = urlsplit(u)
        if parts.scheme.lower() not in ("http", "https", "ftp"):
            return ""
        host = parts.hostname or ""
    except ValueError:
        return ""
    return _idna(host.rstrip("."))


def _link(url: str, text: str = "", anchor: bool = False) -> Link:
    return Link(url[:2000], host_of(url), text, anchor)


def _zip_names(data: bytes) -> list[str]:
    try:
        with zipfile.ZipFile(BytesIO(data)) as z:
            return [i.filename for i in z.infolist()[:MAX_ZIP_NAMES]]
    except Exception:  # not a zip, or a broken one: no names
        return []


_CONTAINERS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")  # zip, OLE2


def _attachment(part: email.message.Message, filename: str, ctype: str) -> Attachment:
    # Decode only what a rule or the macro check looks inside: containers. The rest is
    # known by its name, type and (estimated) size.
    try:
        raw = part.get_payload(decode=False)
    except Exception:
        raw = ""
    encoded = len(raw) if isinstance(raw, str | bytes) else 0
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    estimate = encoded * 3 // 4 if cte == "base64" else encoded
    data = b""
    if ctype.startswith(("text/", "image/", "audio/", "video/")) or estimate > MAX_ATTACHMENT:
        return Attachment(filename, ctype, estimate)
    if cte == "base64" and isinstance(raw, str):
        # The first bytes tell a container (zip, OLE2) from the rest: decode all only then.
        head64 = "".join(raw[:64].split())[:12]
        try:
            if not base64.b64decode(head64 + "=" * (-len(head64) % 4)).startswith(_CONTAINERS):
                return Attachment(filename, ctype, estimate)
        except ValueError:
            pass  # broken base64: let the email package do what it can
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        if payload.startswith(_CONTAINERS):
            data = payload
        estimate = len(payload)
    return Attachment(filename, ctype, estimate, data)


def _walk(msg: email.message.Message) -> Iterable[email.message.Message]:
    """Leaf parts, depth first, without recursion: bounded in count and depth."""
    stack: list[tuple[email.message.Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list) and depth < MAX_DEPTH:
                stack.extend(
                    (c, depth + 1)
                    for c in reversed(children)
                    if isinstance(c, email.message.Message)
                )
            continue
        yield part


def parse(raw: bytes) -> Parsed:
    """Everything the rules need, from one parse; never raises."""
    try:
        return _parse(raw[:MAX_PARSE])
    except Exception as e:  # includes RecursionError on absurd nesting
        return _headers_only(raw, f"{type(e).__name__}")


def _headers_only(raw: bytes, why: str) -> Parsed:
    """The header facts and the raw body as text: the rules still see what it says."""
    why = why or "unparsable"
    try:
        head, _, body = raw[:MAX_PARSE].partition(b"\r\n\r\n")
        text = body[:MAX_TEXT].decode("utf-8", "replace")
        msg = email.message_from_bytes(head[:65536] + b"\r\n\r\n")
        return replace(_header_facts(msg), text=text, broken=why)
    except Exception:
        return Parsed(broken=why)


def _header_facts(msg: email.message.Message) -> Parsed:
    headers: list[tuple[str, str]] = []
    for name, value in msg.items()[:500]:
        headers.append((str(name).strip().lower(), _decode_header(value)))
    get = dict(headers)
    from_name, from_addr = "", ""
    if "from" in get:
        try:
            from_name, from_addr = email.utils.parseaddr(get["from"])
        except Exception:
            from_name, from_addr = "", ""
    return Parsed(
        subject=get.get("subject", "")[:1000],
        from_name=from_name[:300],
        from_addr=from_addr[:300].lower(),
        has_date="date" in get,
        has_message_id="message-id" in get,
        received=tuple(v for n, v in headers if n == "received")[:50],
        headers=tuple(headers),
    )


def _parse(raw: bytes) -> Parsed:
    msg = email.message_from_bytes(raw)
    facts = _header_facts(msg)
    text: list[str] = []
    html_text: list[str] = []
    text_size = html_size = 0
    links: list[Link] = []
    attachments: list[Attachment] = []
    images = 0
    has_html = has_plain = False
    broken = ""
    parts = 0
    for part in _walk(msg):
        parts += 1
        ctype = part.get_content_type().lower()
        disposition = str(part.get("Content-Disposition", "")).split(";")[0].strip().lower()
        try:
            filename = _decode_header(part.get_filename() or "")
        except Exception:
            filename = ""
        if filename or disposition == "attachment" or not ctype.startswith("text/"):
            if ctype.startswith("image/"):
                images += 1
            attachments.append(_attachment(part, filename[:300], ctype))
            continue
        if ctype == "text/html":
            has_html = True
            if html_size >= MAX_TEXT:
                continue
            source = _text_of(part)[:MAX_HTML]
            h = _Html()
            try:
                h.feed(source)
                h.close()
            except Exception:  # html.parser is tolerant, but hostile input is hostile
                broken = broken or "html"
            visible = "".join(h.chunks)[: MAX_TEXT - html_size]
            html_size += len(visible)
            html_text.append(visible)
            images += h.images
            for href, atext in h.anchors[: MAX_LINKS - len(links)]:
                links.append(_link(href, atext, anchor=True))
        else:
            has_plain = has_plain or ctype == "text/plain"
            if text_size >= MAX_TEXT:
                continue
            t = _text_of(part)[: MAX_TEXT - text_size]
            text_size += len(t)
            text.append(t)
    if parts == 0 or (msg.defects and not (text or html_text or attachments)):
        broken = broken or "no parts"
    plain = "\n".join(text)
    visible = "\n".join(html_text)
    known = {lk.url for lk in links}
    for url in extract_urls(plain + "\n" + visible, MAX_LINKS):
        if len(links) >= MAX_LINKS:
            break
        if url not in known:
            known.add(url)
            links.append(_link(url))
    return replace(
        facts,
        text=plain,
        html_text=visible,
        has_html=has_html,
        has_plain=has_plain,
        images=images,
        links=tuple(links),
        attachments=tuple(attachments),
        broken=broken,
    )


# -- domains -----------------------------------------------------------------------------------

# RFC 2606/6761 names are not in the PSL but are domains all the same (tests use them).
_RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})


def registered_domain(host: str, psl: PublicSuffixList | None = None) -> str:
    """The registered (organizational) domain of a host name: ``login.bank.example`` ->
    ``bank.example``; an IP address stays itself."""
    if _ip_host(host):
        return host
    return (psl or default_list()).organizational_domain(host)


_IPISH = re.compile(r"[0-9a-fx.:]+")
_OBFUSCATED_IP = re.compile(r"(?:0x[0-9a-f]+|\d+)(?:\.(?:0x[0-9a-f]+|\d+)){0,3}")


def _ip_host(host: str) -> bool:
    """An IP address, also in the forms browsers accept: ``3221225985``, ``0xc0000201``."""
    if not host or not _IPISH.fullmatch(host):
        return False  # most host names: a letter past f, or a hyphen
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_OBFUSCATED_IP.fullmatch(host))


def _is_domain(name: str, psl: PublicSuffixList) -> bool:
    """Looks like a domain name with a real top-level domain (not ``Dr.Who``, ``v2.0``)."""
    labels = name.lower().rstrip(".").split(".")
    if len(labels) < 2 or not all(labels):
        return False
    tld = _idna(labels[-1])
    return tld in psl.rules or tld in _RESERVED_TLDS


# Well-known brands phished most often; a registered domain whose first label *looks* like
# one of these without being it is a lookalike (paypa1, rnicrosoft, or apple with a Cyrillic a).
BRANDS = (
    "paypal",
    "apple",
    "microsoft",
    "office365",
    "outlook",
    "google",
    "amazon",
    "netflix",
    "facebook",
    "instagram",
    "linkedin",
    "dropbox",
    "docusign",
    "fedex",
    "chase",
    "wellsfargo",
)

# Confusables folded to one ASCII skeleton: a tiny subset of Unicode TR39's table
# (Cyrillic, Greek and Latin letters that look like ASCII ones), written as escapes.
_CONFUSABLE = str.maketrans(
    {
        **dict.fromkeys("\u0430\u03b1", "a"),
        **dict.fromkeys("\u0435", "e"),
        **dict.fromkeys("\u043e\u03bf", "o"),
        **dict.fromkeys("\u0440\u03c1", "p"),
        **dict.fromkeys("\u0441", "c"),
        **dict.fromkeys("\u0443", "y"),
        **dict.fromkeys("\u0445", "x"),
        **dict.fromkeys("\u0456\u04cf\u03b9\u0131\u0142", "l"),
        **dict.fromkeys("\u0458", "j"),
        **dict.fromkeys("\u0455", "s"),
        **dict.fromkeys("\u0501", "d"),
        **dict.fromkeys("\u04bb", "h"),
        **dict.fromkeys("\u043a\u03ba", "k"),
        **dict.fromkeys("\u0442\u03c4", "t"),
        **dict.fromkeys("\u03bd", "v"),
        **dict.fromkeys("\u0261", "g"),
        "0": "o", "1": "l", "i": "l", "5": "s", "3": "e", "-": "", "_": "",
    }
)  # fmt: skip


def _skeleton(label: str) -> str:
    s = unicodedata.normalize("NFKD", label.lower())
    s = "".join(c for c in s if not unicodedata.combining(c)).translate(_CONFUSABLE)
    return s.replace("rn", "m").replace("vv", "w")


_BRAND_SKELETONS = {_skeleton(b): b for b in BRANDS}


def lookalike_of(host: str, psl: PublicSuffixList | None = None) -> str | None:
    """The brand a host's registered domain imitates without being it, if any: the whole
    first label (``paypa1``), or one of its hyphenated words (``rnicrosoft-365``,
    ``secure-paypa1-login``). A brand's own name as a word (``apple-growers``) is not one."""
    if not host or _ip_host(host):
        return None
    label = registered_domain(host, psl).split(".")[0]
    try:
        shown = label.encode("ascii").decode("idna") if label.startswith("xn--") else label
    except UnicodeError:
        shown = label
    words = [w for w in shown.split("-") if w] if "-" in shown else []
    for candidate in (shown, *words[:8]):
        brand = _BRAND_SKELETONS.get(_skeleton(candidate))
        if brand is not None and candidate != brand:
            return brand
    return None


# -- phishing ----------------------------------------------------------------------------------

_SHOWN_HOST = re.compile(
    r"^(?:(?:https?|ftp)://)?((?:[\w-]{1,63}\.)+[\w-]{2,63})\.?(?::\d+)?(?:[/?#]\S*)?$"
)


def _shown_host(text: str, psl: PublicSuffixList) -> str:
    """The host a link's visible text names, if it reads as a URL or domain."""
    m = _SHOWN_HOST.match(text.strip())
    if m is None or not _is_domain(m.group(1), psl):
        return ""
    return _idna(m.group(1).rstrip("."))


def phishing(parsed: Parsed, psl: PublicSuffixList | None = None) -> list[Hit]:
    """Deceptive links: text naming one site and going to another, raw IPs, lookalikes."""
    psl = psl or default_list()
    hits: list[Hit] = []
    mismatch = ip = look = ""
    seen: set[str] = set()  # newsletters repeat one host dozens of times
    orgs: dict[str, str] = {}

    def org(host: str) -> str:
        if host not in orgs:
            orgs[host] = registered_domain(host, psl)
        return orgs[host]

    for lk in parsed.links:
        if not lk.host:
            continue
        if lk.anchor and lk.text and not mismatch:
            shown = _shown_host(lk.text, psl)
            if shown and org(shown) != org(lk.host):
                mismatch = f"text={shown} href={lk.host}"
        if lk.host in seen:
            continue
        seen.add(lk.host)
        if not ip and _ip_host(lk.host):
            ip = lk.host
        if not look:
            brand = lookalike_of(lk.host, psl)
            if brand:
                look = f"{lk.host}~{brand}"
    _, _, from_domain = parsed.from_addr.rpartition("@")
    if not look and from_domain:
        brand = lookalike_of(_idna(from_domain), psl)
        if brand:
            look = f"from {from_domain}~{brand}"
    if mismatch:
        hits.append(Hit("PHISH_LINK_MISMATCH", 4.0, mismatch))
    if ip:
        hits.append(Hit("URL_IP_LITERAL", 2.0, ip))
    if look:
        hits.append(Hit("LOOKALIKE_DOMAIN", 3.5, look))
    return hits


# -- the rule table ----------------------------------------------------------------------------

Test = Callable[[Parsed], str | None]


@dataclass(frozen=True)
class Rule:
    """One rule: ``test`` returns None when it does not fire, else a detail for the log."""

    name: str
    weight: float
    description: str
    test: Test = field(repr=False, compare=False)


def _phrases(pattern: str) -> Test:
    rx = re.compile(pattern, re.IGNORECASE)

    def test(p: Parsed) -> str | None:
        m = rx.search(p.subject) or rx.search(p.body)
        return m.group(0)[:60] if m else None

    return test


def _contains(needle: str) -> Test:
    return lambda p: needle[:8] if needle in p.body or needle in p.subject else None


def _subject_caps(p: Parsed) -> str | None:
    letters = [c for c in p.subject if c.isalpha()]
    if len(letters) >= 8 and all(c.isupper() for c in letters):
        return p.subject[:60]
    return None


def _exclaims(p: Parsed) -> str | None:
    if p.subject.count("!") >= 3:
        return "subject"
    if "!!!" in p.body or p.body.count("!") >= 15:
        return "body"
    return None


def _display_spoof(p: Parsed) -> str | None:
    """From: "service@bank.example" <x@other.test>: the name claims another domain."""
    if not p.from_name or "@" not in p.from_addr:
        return None
    psl = default_list()
    real = registered_domain(_idna(p.from_addr.rpartition("@")[2].rstrip(".")), psl)
    for m in re.finditer(r"(?:[\w-]{1,63}\.)+[\w-]{2,63}", p.from_name.lower()):
        claimed = m.group(0)
        if _is_domain(claimed, psl) and registered_domain(_idna(claimed), psl) != real:
            return f"{claimed} vs {real}"
    return None


def _html_little_text(p: Parsed) -> str | None:
    if p.has_html and not p.has_plain and len(p.html_text.split()) < 25:
        return f"{len(p.html_text.split())} words"
    return None


DANGEROUS = frozenset(
    [".exe", ".scr", ".pif", ".com", ".bat", ".cmd", ".js", ".jse", ".vbs", ".vbe", ".wsf",
     ".wsh", ".hta", ".jar", ".msi", ".lnk", ".ps1", ".cpl", ".reg", ".iso", ".img", ".vhd"]
)  # fmt: skip


def _dangerous(name: str) -> bool:
    name = name.lower().strip().rstrip(".")
    return any(name.endswith(ext) for ext in DANGEROUS)


def _executable_attachment(p: Parsed) -> str | None:
    for a in p.attachments:
        if _dangerous(a.filename):
            return a.filename[:80]
        if a.data.startswith(b"PK\x03\x04"):
            for inner in _zip_names(a.data):
                if _dangerous(inner):
                    return f"{a.filename[:60]}:{inner[:60]}"
    return None


_BRACKET_IP = re.compile(r"\[(\d{1,4})\.(\d{1,4})\.(\d{1,4})\.(\d{1,4})\]")


def _illegal_received_ip(p: Parsed) -> str | None:
    """A Received field naming an impossible IPv4 literal: written by hand, not by an MTA."""
    for value in p.received:
        for m in _BRACKET_IP.finditer(value):
            octets = [int(g) for g in m.groups()]
            if any(o > 255 for o in octets) or octets[0] == 0 or octets == [255] * 4:
                return m.group(0)
    return None


def _missing(header: str) -> Test:
    key = {"date": "has_date", "message-id": "has_message_id"}[header]
    return lambda p: None if getattr(p, key) else ""


def _broken(p: Parsed) -> str | None:
    return p.broken or None


RULES: tuple[Rule, ...] = (
    Rule("GTUBE", 1000.0, "the GTUBE test string", _contains(GTUBE)),
    Rule("GTUBE_JUNK", 5.0, "the junk-level GTUBE variant (weight: the junk threshold)",
         _contains(GTUBE_JUNK)),
    Rule("MISSING_DATE", 1.0, "no Date header field", _missing("date")),
    Rule("MISSING_MID", 1.0, "no Message-ID header field", _missing("message-id")),
    Rule("SUBJ_ALL_CAPS", 1.5, "the subject is all capital letters", _subject_caps),
    Rule("EXCLAIM_MANY", 1.0, "many exclamation marks", _exclaims),
    Rule("FROM_DISPLAY_SPOOF", 3.0, "From's display name names a domain other than the "
         "address's", _display_spoof),
    Rule("HTML_LITTLE_TEXT", 1.5, "HTML only, with little text", _html_little_text),
    Rule("ATTACH_EXECUTABLE", 4.0, "an executable attachment, or one inside a zip",
         _executable_attachment),
    Rule("RCVD_ILLEGAL_IP", 2.0, "a Received field with an impossible IP address",
         _illegal_received_ip),
    Rule("MIME_BROKEN", 1.0, "MIME structure that cannot be followed", _broken),
    Rule("ADVANCE_FEE", 2.5, "advance-fee and lottery phrases", _phrases(
        r"\b(?:million (?:us )?dollars|next of kin|beneficiary|inheritance fund|lottery|"
        r"you (?:have )?won|claim your (?:prize|reward|winnings)|western union|money ?gram)\b")),
    Rule("PHARMA", 2.5, "pharmacy spam", _phrases(
        r"\b(?:viagra|cialis|levitra|no prescription needed|online pharmacy)\b")),
    Rule("URGENCY", 1.5, "urgency and too-good-to-be-true phrases", _phrases(
        r"\b(?:act now|limited time (?:offer|only)|100% (?:free|guaranteed)|risk[- ]free|"
        r"once in a lifetime|urgent(?:ly)? (?:reply|response))\b")),
    Rule("ACCOUNT_THREAT", 2.0, "'your account is suspended, verify now' phrases", _phrases(
        r"\b(?:verify your (?:account|identity)|(?:account|mailbox) (?:has been |was |will be )?"
        r"(?:suspended|locked|disabled|deactivated)|confirm your (?:password|identity|"
        r"billing)|unusual (?:sign-?in|login) activity|update your payment)")),
    Rule("CRYPTO_SCAM", 2.0, "crypto-investment scam phrases", _phrases(
        r"\b(?:double your (?:bitcoin|crypto|money|investment)|bitcoin wallet address|"
        r"guaranteed (?:returns|profit))\b")),
    Rule("CLICK_HERE", 0.5, "'click here'", _phrases(r"\bclick here\b")),
)  # fmt: skip


def analyse(
    parsed: Parsed,
    rules: Sequence[Rule] = RULES,
    *,
    psl: PublicSuffixList | None = None,
) -> Score:
    """The rule table and the phishing checks over a parsed message (no network)."""
    hits: list[Hit] = []
    for rule in rules:
        try:
            detail = rule.test(parsed)
        except Exception:  # a rule bug must not lose mail: that rule stays silent
            log.exception("spam.rule-error rule=%s", rule.name)
            continue
        if detail is not None:
            hits.append(Hit(rule.name, rule.weight, detail))
    return Score(tuple(hits) + tuple(phishing(parsed, psl)))


def with_weights(rules: Sequence[Rule], weights: dict[str, float]) -> tuple[Rule, ...]:
    """The rule table with some weights changed (configuration, not code)."""
    return tuple(replace(r, weight=weights.get(r.name, r.weight)) for r in rules)


# -- URI blocklists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UriZone:
    """A URI blocklist (SURBL/URIBL style, RFC 5782 2.3): ``<domain>.<zone>`` is listed.

    ``codes`` maps a return address to a weight; empty takes any 127/8 answer at ``weight``.
    """

    zone: str
    codes: dict[str, float] = field(default_factory=dict)
    weight: float = 10.0


def _refused_answer(code: str) -> bool:
    # 127.0.0.1 (URIBL, SURBL) and 127.255.255.x (Spamhaus) mean "query refused" (public
    # resolver, over quota), not "listed".
    return code == "127.0.0.1" or code.startswith("127.255.255.")


async def uribl(
    resolver: dns.asyncresolver.Resolver,
    zones: Sequence[UriZone],
    links: Iterable[Link],
    *,
    psl: PublicSuffixList | None = None,
    limit: int = MAX_URIBL_DOMAINS,
) -> list[Hit]:
    """The registered domains of the links, looked up in each zone; failures score nothing."""
    psl = psl or default_list()
    domains: list[str] = []
    for lk in links:
        if not lk.host or _ip_host(lk.host) or not _is_domain(lk.host, psl):
            continue
        d = registered_domain(lk.host, psl)
        if d not in domains:
            domains.append(d)
        if len(domains) >= limit:
            break

    async def one(domain: str, z: UriZone) -> Hit | None:
        name = f"{domain}.{z.zone}"
        try:
            answer = await resolver.resolve(name, "A")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as e:
            event(log, "uribl.temperror", zone=z.zone, domain=domain, error=type(e).__name__)
            return None
        weight = 0.0
        for r in answer:
            code = r.to_text()
            if not code.startswith("127.") or _refused_answer(code):
                if _refused_answer(code):
                    event(log, "uribl.refused", level=logging.WARNING, zone=z.zone, code=code)
                continue
            if z.codes and code not in z.codes:
                continue
            weight = max(weight, z.codes.get(code, z.weight))
        if weight <= 0:
            return None
        return Hit("URIBL_" + re.sub(r"\W", "_", z.zone.upper()), weight, domain)

    found = await asyncio.gather(*(one(d, z) for d in domains for z in zones))
    # One hit per zone (the heaviest): a message with ten listed links is no more refused.
    best: dict[str, Hit] = {}
    for h in found:
        if h is not None and (h.rule not in best or h.weight > best[h.rule].weight):
            best[h.rule] = h
    return list(best.values())
