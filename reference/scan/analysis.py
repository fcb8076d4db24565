"""One bounded parse of a message for the spam rules: header facts, text, links, attachments."""

from __future__ import annotations

import base64
import email
import email.header
import email.message
import email.utils
import functools
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from io import BytesIO

from reference.mail.message import Message
from reference.scan.links import MAX_LINKS, Link, extract_urls, host_of

__all__ = [
    "MAX_ATTACHMENT",
    "MAX_DEPTH",
    "MAX_HTML",
    "MAX_PARSE",
    "MAX_PARTS",
    "MAX_TEXT",
    "MAX_ZIP_NAMES",
    "Attachment",
    "Parsed",
    "parse",
    "zip_names",
]

MAX_PARSE = 32 << 20  # bytes of a message handed to the email parser (SIZE caps it anyway)
MAX_PARTS = 200  # MIME parts walked
MAX_DEPTH = 20  # MIME nesting followed
MAX_TEXT = 256 << 10  # characters of decoded text (plain and visible HTML) kept
MAX_HTML = 512 << 10  # characters of HTML source parsed
MAX_ATTACHMENT = 16 << 20  # bytes of one attachment decoded (for zip listings and macros)
MAX_ZIP_NAMES = 500  # names read from a zip's directory


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

    @functools.cached_property
    def phrase_text(self) -> str:
        """Subject and body, lower-cased once for every phrase rule (a case-insensitive
        regex costs twice as much as lower-casing the text and matching it plainly)."""
        return (self.subject + "\n" + self.body).lower()

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


# -- parsing -----------------------------------------------------------------------------------


def _decode_header(value: object) -> str:
    text = str(value)
    if "=?" not in text:
        return text  # no encoded-word (RFC 2047): decoding would give the same text back
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except Exception:  # malformed encoded-words, unknown charsets: keep the raw text
        return text


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


def _link(url: str, text: str = "", anchor: bool = False) -> Link:
    return Link(url[:2000], host_of(url), text, anchor)


def zip_names(data: bytes) -> list[str]:
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


def parse(message: Message | bytes) -> Parsed:
    """Everything the rules need, from the message's one MIME parse; never raises."""
    msg = Message.of(message)
    raw = msg.raw
    try:
        # A message past the bound (SIZE refuses it first) is parsed cut, on its own.
        return _parse(msg.mime if len(raw) <= MAX_PARSE else Message(raw[:MAX_PARSE]).mime)
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


def _parse(msg: email.message.Message) -> Parsed:
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
