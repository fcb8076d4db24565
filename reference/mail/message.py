"""One message, parsed once: the raw bytes as received, header fields kept byte for byte,
parsed views computed when first asked for, header edits applied in one place.

Every part of the reference that looks into a message's header (DKIM, ARC, DMARC,
Authentication-Results, submission rules, spam, the DSN, IMAP) splits it with
:func:`split_header` here: one rule for where the header ends. What looks into its MIME
structure (the spam engine: parts, text, links, attachments) reads :attr:`Message.mime`,
parsed by the standard library once, when first asked for.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "Field",
    "Message",
    "from_domains",
    "header_fields",
    "mime_parses",
    "split_header",
    "split_message",
    "splits",
    "unfold",
]

_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


class _Counter:
    """How many times a message was split: a test proves the inbound path splits once."""

    value = 0


splits = _Counter()
# How many times a message's MIME structure was parsed (Message.mime): once per message.
mime_parses = _Counter()


@dataclass(frozen=True)
class Field:
    """One header field: its name as written and its raw bytes (folding and CRLF included)."""

    name: str
    raw: bytes

    @property
    def lname(self) -> str:
        return self.name.lower()

    @property
    def value(self) -> bytes:
        """The raw value after the colon, line ending removed, still folded."""
        return self.raw.split(b":", 1)[1].rstrip(b"\r\n")

    def text(self) -> str:
        """The unfolded value as text (bytes that are not UTF-8 become U+FFFD)."""
        return unfold(self.value).decode("utf-8", "replace").strip()


def split_header(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header section with its last line ending, the blank line, body), so that
    ``header + blank + body == raw``. The header ends at the first empty line (CRLF or a
    bare LF); a message without one is all header."""
    splits.value += 1
    pos = 0
    while pos < len(raw):
        eol = raw.find(b"\n", pos)
        if eol < 0:
            break
        if eol == pos or (eol == pos + 1 and raw[pos : pos + 1] == b"\r"):
            return raw[:pos], raw[pos : eol + 1], raw[eol + 1 :]
        pos = eol + 1
    return raw, b"", b""


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header section with its last line ending, body); no blank line: all header."""
    header, _, body = split_header(raw)
    return header, body


def header_fields(header: bytes) -> list[Field]:
    """The fields of a header section, in order; stray lines join the field above them."""
    fields: list[Field] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            last = fields[-1]
            fields[-1] = Field(last.name, last.raw + line)
            continue
        m = _NAME.match(line)
        if m is None:
            if fields:
                last = fields[-1]
                fields[-1] = Field(last.name, last.raw + line)
            continue
        fields.append(Field(m.group(1).decode("ascii"), line))
    return fields


_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def unfold(value: bytes) -> bytes:
    # Most values are not folded: those need no regex at all.
    return _FOLD.sub(b"", value) if b"\n" in value else value


def _domains_of(fields: Iterable[Field]) -> list[str]:
    domains: list[str] = []
    for f in fields:
        if f.lname != "from":
            continue
        for _, addr in email.utils.getaddresses([f.text()]):
            _, at, domain = addr.rpartition("@")
            domain = domain.strip().rstrip(".").lower()
            if at and domain and domain not in domains:
                domains.append(domain)
    return domains


def from_domains(header: bytes) -> list[str]:
    """RFC 7489 6.6.1: the domains of the RFC5322.From addresses, lower case, in order."""
    return _domains_of(header_fields(header))


class Message:
    """A message as received, split once; views (fields, From domains) computed lazily."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @classmethod
    def of(cls, message: Message | bytes) -> Message:
        """``message`` itself, or the bytes wrapped (mechanisms take either)."""
        return message if isinstance(message, Message) else cls(raw=message)

    @cached_property
    def _parts(self) -> tuple[bytes, bytes, bytes]:
        return split_header(self.raw)

    @property
    def header(self) -> bytes:
        """The header section, its last line ending included, the blank line not."""
        return self._parts[0]

    @property
    def blank(self) -> bytes:
        return self._parts[1]

    @property
    def body(self) -> bytes:
        return self._parts[2]

    @cached_property
    def mime(self) -> email.message.Message:
        """The MIME structure (the standard library's parse, compat32 as its default is),
        parsed when first asked for; it may carry defects, never raises on bad input."""
        mime_parses.value += 1
        return email.message_from_bytes(self.raw)

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        return tuple(header_fields(self.header))

    @cached_property
    def _by_name(self) -> dict[str, list[Field]]:
        # Built once: every check asks for fields by name, many times a message.
        index: dict[str, list[Field]] = {}
        for f in self.fields:
            index.setdefault(f.lname, []).append(f)
        return index

    def get_all(self, name: str) -> list[Field]:
        """The fields called ``name`` (any case), in order."""
        return list(self._by_name.get(name.lower(), ()))

    def has(self, *names: str) -> bool:
        return any(n.lower() in self._by_name for n in names)

    @cached_property
    def from_domains(self) -> list[str]:
        """RFC 7489 6.6.1: the domains of the RFC5322.From addresses, lower case, in order."""
        return _domains_of(self.fields)

    def edited(self, prepend: bytes = b"", remove: Sequence[bytes] = ()) -> Message:
        """The message with header fields put on top and raw fields taken out (each at
        the start of a line of the header), the body untouched."""
        if not (prepend or remove):
            return self
        header = self.header
        for f in remove:
            at = header.find(f)
            while at > 0 and header[at - 1 : at] != b"\n":
                at = header.find(f, at + 1)
            if at >= 0:
                header = header[:at] + header[at + len(f) :]
        return Message(prepend + header + self.blank + self.body)

    def with_header(self, header: bytes) -> Message:
        """The same blank line and body under another header section."""
        return Message(header + self.blank + self.body)
