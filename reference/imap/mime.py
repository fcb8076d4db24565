"""A message's MIME structure for FETCH: ENVELOPE, BODYSTRUCTURE, BODY[part], BINARY (pure).

Parts keep the exact bytes of the stored message, so ``BODY[2.MIME]`` and ``BODY[2]`` are
slices of what the sender sent (RFC 9051 6.4.5). Values for the renderer are plain Python:
``None`` is NIL, ``str``/``bytes`` are strings, ``int`` numbers, lists parenthesized lists.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from reference.imap import addresses as address_list
from reference.mailbox.message import header_fields
from reference.mailbox.message import split as split  # re-exported: mime.split(data)

MAX_DEPTH = 20  # nesting of multiparts and messages: hostile mail must not recurse forever
MAX_PARTS = 1000

_LINE = re.compile(rb"[^\n]*\n|[^\n]+\Z")


class Unspaced(list[Any]):
    """A parenthesized list written without spaces between its items: an ENVELOPE address
    list is ``"(" 1*address ")"`` (RFC 3501 9, env-from and the others)."""


class UnknownEncoding(ValueError):
    """BINARY of a part whose Content-Transfer-Encoding is not known (RFC 3516 UNKNOWN-CTE)."""


@dataclass
class Part:
    """One MIME entity: its header (with the blank line) and body, as stored."""

    header: bytes
    body: bytes
    maintype: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)  # a multipart's parts
    message: Part | None = None  # message/rfc822: the message inside
    # The header's fields, read once when first asked for: a part's header is looked at
    # for its Content-Type, its transfer encoding, and (the message's) by SEARCH.
    _fields: list[tuple[str, str]] | None = field(default=None, repr=False, compare=False)

    @property
    def multipart(self) -> bool:
        return self.maintype == "multipart"

    def fields(self) -> list[tuple[str, str]]:
        """:func:`fields` of the part's header."""
        if self._fields is None:
            self._fields = fields(self.header)
        return self._fields

    def field(self, name: str) -> str | None:
        """The first header field called ``name``, unfolded, or None."""
        wanted = name.lower()
        return next((v for n, v in self.fields() if n == wanted), None)


def fields(header: bytes) -> list[tuple[str, str]]:
    """``(lower-case name, unfolded value)`` for each header field, in order."""
    out: list[tuple[str, list[str]]] = []
    # Decoded once, not line by line: a newline is never inside a UTF-8 sequence, so the
    # text is the same; continuation lines (a DKIM signature has a dozen) are joined once.
    for line in header.decode("utf-8", "replace").split("\n"):
        if line in ("", "\r"):
            break  # the blank line that ends the header (or the end of the text)
        text = line.rstrip("\r")
        if not text:
            continue
        if text[0] in " \t":
            if out:
                out[-1][1].append(text.strip())
            continue
        name, colon, value = text.partition(":")
        if colon:
            out.append((name.strip().lower(), [value.strip()]))
    return [(name, " ".join(parts)) for name, parts in out]


def first_field(header: bytes, name: str) -> str | None:
    wanted = name.lower()
    return next((v for n, v in fields(header) if n == wanted), None)


def parse(data: bytes, *, default: tuple[str, str] = ("text", "plain"), depth: int = 0) -> Part:
    """The MIME tree of ``data`` (a message, or a body part with its MIME header)."""
    header, body = split(data)
    part = Part(header, body)
    counter = [0]
    _fill(part, default, depth, counter)
    return part


def _fill(part: Part, default: tuple[str, str], depth: int, counter: list[int]) -> None:
    counter[0] += 1
    ctype = part.field("content-type")
    part.maintype, part.subtype, part.params = _content_type(ctype, default)
    if depth >= MAX_DEPTH or counter[0] > MAX_PARTS:
        part.maintype, part.subtype = ("application", "octet-stream")
        return
    if part.multipart:
        boundary = next((v for k, v in part.params if k == "boundary"), "")
        child_default = ("message", "rfc822") if part.subtype == "digest" else ("text", "plain")
        for chunk in _split_multipart(part.body, boundary.encode("utf-8", "replace")):
            header, body = split(chunk)
            child = Part(header, body)
            _fill(child, child_default, depth + 1, counter)
            part.children.append(child)
        if not part.children:  # RFC 2046 5.1.1: a multipart has at least one part
            part.maintype, part.subtype = ("text", "plain")
    elif part.maintype == "message" and part.subtype in ("rfc822", "global"):
        header, body = split(part.body)
        inner = Part(header, body)
        _fill(inner, ("text", "plain"), depth + 1, counter)
        part.message = inner


def _content_type(
    value: str | None, default: tuple[str, str]
) -> tuple[str, str, list[tuple[str, str]]]:
    main, sub, params = _parse_content_type(value, default)
    return main, sub, list(params)


# A few Content-Type values make up nearly all mail ("text/plain; charset=utf-8"), and the
# email package's parameter parsing costs more than the rest of a message's MIME parse.
@functools.lru_cache(maxsize=1024)
def _parse_content_type(
    value: str | None, default: tuple[str, str]
) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    if not value:
        # RFC 2045 5.2: no Content-Type means text/plain; charset=us-ascii.
        implied = (("charset", "us-ascii"),) if default == ("text", "plain") else ()
        return default[0], default[1], implied
    m = Message()
    m["Content-Type"] = value
    main, _, sub = (m.get_content_type() or "").partition("/")
    if m.get("content-type", "").split(";")[0].strip().count("/") != 1:
        main, sub = default  # RFC 2045 5.2: an invalid Content-Type means the default
    params: list[tuple[str, str]] = []
    for key, raw in (m.get_params() or [])[1:]:
        val = email.utils.collapse_rfc2231_value(raw) if isinstance(raw, tuple) else raw
        params.append((key.lower(), str(val)))
    return main.lower(), sub.lower(), tuple(params)


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` lines; the CRLF before a delimiter belongs to it."""
    if not boundary:
        return []
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for m in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : m.start()])
            if len(parts) >= MAX_PARTS:
                return parts
        if m.group(1):  # the close delimiter
            return parts
        start = m.end()
    if start is not None:
        parts.append(body[start:])  # no close delimiter: the last part runs to the end
    return parts


def encode_binary_parts(data: bytes, *, depth: int = 0) -> bytes:
    """``data`` with each leaf part whose Content-Transfer-Encoding is ``binary`` re-encoded
    as base64, everything else kept byte for byte; for an APPEND with a literal8 (RFC 3516
    4.3), so that the stored message is mail (CRLF lines, no NUL: RFC 5322 2.3) and BINARY
    still returns the exact octets sent. Dovecot does the same."""
    header, body = split(data)
    ctype = first_field(header, "content-type")
    main, sub, params = _content_type(ctype, ("text", "plain"))
    if depth >= MAX_DEPTH:
        return data
    if main == "multipart":
        boundary = next((v for k, v in params if k == "boundary"), "").encode("utf-8", "replace")
        return header + _encode_multipart(body, boundary, depth)
    if main == "message" and sub in ("rfc822", "global"):
        return header + encode_binary_parts(body, depth=depth + 1)
    encoding = (first_field(header, "content-transfer-encoding") or "").strip().lower()
    if encoding != "binary":
        return data
    encoded = base64.encodebytes(body).replace(b"\n", b"\r\n")  # 76-octet lines, 2045 6.8
    return _replace_field(header, "content-transfer-encoding", b"base64") + encoded


def _encode_multipart(body: bytes, boundary: bytes, depth: int) -> bytes:
    if not boundary:
        return body
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    out: list[bytes] = []
    position = 0
    inside = False
    for m in delimiter.finditer(body):
        chunk = body[position : m.start()]
        out.append(encode_binary_parts(chunk, depth=depth + 1) if inside else chunk)
        out.append(m.group(0))
        position = m.end()
        if m.group(1):  # the close delimiter: the epilogue stays as it is
            inside = False
            break
        inside = True
    rest = body[position:]
    out.append(encode_binary_parts(rest, depth=depth + 1) if inside else rest)
    return b"".join(out)


def _replace_field(header: bytes, name: str, value: bytes) -> bytes:
    """``header`` with the field ``name`` (and its continuation lines) set to ``value``."""
    wanted = name.lower().encode()
    out: list[bytes] = []
    skipping = False
    for line in _LINE.findall(header):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == wanted and b":" in line
        if skipping:
            out.append(line.split(b":", 1)[0] + b": " + value + b"\r\n")
        else:
            out.append(line)
    return b"".join(out)


# -- sections ---------------------------------------------------------------------------------


def find(root: Part, numbers: tuple[int, ...]) -> Part | None:
    """The part named by section numbers (RFC 9051 6.4.5), or None when there is none."""
    current, is_message = root, True
    for i, n in enumerate(numbers):
        if current.multipart:
            if n > len(current.children):
                return None
            current = current.children[n - 1]
        elif not (is_message and n == 1):
            return None  # only a message's single body is its part 1; a leaf has no parts
        is_message = False
        if i < len(numbers) - 1 and current.message is not None:
            current, is_message = current.message, True  # 2.1: part 1 of the message in 2
    return current


def section(
    data: bytes,
    numbers: tuple[int, ...],
    text: str,
    names: tuple[str, ...] = (),
) -> bytes:
    """The bytes of ``BODY[numbers.text]``; empty for a part that does not exist."""
    root = parse(data)
    if not numbers:
        target: Part | None = root
        whole = data
    else:
        target = find(root, numbers)
        if target is None:
            return b""
        whole = target.header + target.body
    if text == "":
        return whole if not numbers else target.body  # type: ignore[union-attr]
    assert target is not None
    if text == "MIME":
        return target.header
    if numbers:  # HEADER and TEXT of a part address the message inside a message/rfc822
        if target.message is None:
            return b""
        target = target.message
    if text == "HEADER":
        return target.header
    if text == "TEXT":
        return target.body
    return header_fields(target.header, names, exclude=text.endswith(".NOT"))


def binary(data: bytes, numbers: tuple[int, ...]) -> bytes | None:
    """RFC 3516 BINARY[numbers]: the part's body with its transfer encoding undone; None when
    the part does not exist. Raises :class:`UnknownEncoding`."""
    if not numbers:
        return data
    part = find(parse(data), numbers)
    if part is None:
        return None
    return decoded_body(part)


def decoded_body(part: Part) -> bytes:
    """The body of ``part`` with its transfer encoding undone (RFC 3516 BINARY of it).
    Raises :class:`UnknownEncoding`."""
    if part.multipart or part.message is not None:
        return part.body  # RFC 3516 4.2: only leaf parts are decoded
    encoding = (part.field("content-transfer-encoding") or "7bit").strip().lower()
    if encoding in ("7bit", "8bit", "binary"):
        return part.body
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", part.body) + b"===")
        except (binascii.Error, ValueError):
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", part.body) + b"===")
    if encoding == "quoted-printable":
        return decode_qp(part.body)
    raise UnknownEncoding(encoding)


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_qp(body: bytes) -> bytes:
    """Quoted-printable decoding (RFC 2045 6.7): trailing whitespace is transport padding and
    goes (rule 3); ``=`` at a line's end, padding after it allowed, is a soft line break
    (rule 5); an ``=`` that starts no escape is kept, as robust decoders do."""
    out: list[bytes] = []
    for line in _LINE.findall(body):
        content = line.rstrip(b"\r\n")
        hard = len(content) != len(line)
        content = content.rstrip(b" \t")
        soft = content.endswith(b"=")
        if soft:
            content = content[:-1]
        out.append(_QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), content))
        if hard and not soft:
            out.append(b"\r\n")
    return b"".join(out)


# -- ENVELOPE and BODYSTRUCTURE -----------------------------------------------------------------


def envelope(header: bytes) -> list[Any]:
    """RFC 9051 7.5.2 ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc,
    in-reply-to, message-id; sender and reply-to default to from."""
    values = fields(header)

    def get(name: str) -> str | None:
        value = next((v for n, v in values if n == name), None)
        return value if value else None

    sender = addresses(get("from"))
    return [
        get("date"),
        get("subject"),
        sender,
        addresses(get("sender")) or sender,
        addresses(get("reply-to")) or sender,
        addresses(get("to")),
        addresses(get("cc")),
        addresses(get("bcc")),
        get("in-reply-to"),
        get("message-id"),
    ]


def addresses(value: str | None) -> list[list[str | None]] | None:
    """Address structures ``(name adl mailbox host)`` for a header value, groups and routes
    kept (RFC 3501 7.4.2); None when none."""
    if not value:
        return None
    out = Unspaced([a.name, a.route, a.mailbox, a.host] for a in address_list.parse(value))
    return out or None


def bodystructure(part: Part, *, extensible: bool = True) -> list[Any]:
    """RFC 9051 7.5.2 BODYSTRUCTURE (``extensible``) or BODY of a part."""
    if part.multipart:
        out: list[Any] = [bodystructure(c, extensible=extensible) for c in part.children]
        out.append(part.subtype.upper())
        if extensible:
            out += [
                _params(part.params),
                _disposition(part),
                _language(part),
                part.field("content-location"),
            ]
        return out
    encoding = (part.field("content-transfer-encoding") or "7BIT").strip().upper()
    out = [
        part.maintype.upper(),
        part.subtype.upper(),
        _params(part.params),
        part.field("content-id"),
        part.field("content-description"),
        encoding,
        len(part.body),
    ]
    if part.message is not None:
        inner = part.message
        out += [
            envelope(inner.header),
            bodystructure(inner, extensible=extensible),
            _lines(part.body),
        ]
    elif part.maintype == "text":
        out.append(_lines(part.body))
    if extensible:
        out += [
            part.field("content-md5"),
            _disposition(part),
            _language(part),
            part.field("content-location"),
        ]
    return out


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def _params(params: list[tuple[str, str]]) -> list[str] | None:
    flat = [x for key, value in params for x in (key.upper(), value)]
    return flat or None


def _disposition(part: Part) -> list[Any] | None:
    value = part.field("content-disposition")
    if not value:
        return None
    m = Message()
    m["Content-Disposition"] = value
    raw = m.get_params(header="content-disposition") or []
    if not raw:
        return None
    kind = raw[0][0].upper()
    params: list[tuple[str, str]] = []
    for key, val in raw[1:]:
        text = email.utils.collapse_rfc2231_value(val) if isinstance(val, tuple) else val
        params.append((key.lower(), str(text)))
    return [kind, _params(params)]


def _language(part: Part) -> list[str] | None:
    value = part.field("content-language")
    if not value:
        return None
    tags = [t.strip() for t in value.split(",") if t.strip()]
    return tags or None
