"""The header section of a raw message as the mechanisms need it: fields kept byte for byte."""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass

__all__ = ["Field", "from_domains", "header_fields", "split_message", "unfold"]

_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


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


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header section with its last line ending, body); no blank line: all header."""
    pos = 0
    while pos < len(raw):
        eol = raw.find(b"\n", pos)
        if eol < 0:
            break
        if eol == pos or (eol == pos + 1 and raw[pos : pos + 1] == b"\r"):
            return raw[:pos], raw[eol + 1 :]
        pos = eol + 1
    return raw, b""


def header_fields(header: bytes) -> list[Field]:
    """The fields of a header section, in order; stray lines join the field above them."""
    fields: list[Field] = []
    lines = header.splitlines(keepends=True)
    for line in lines:
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


def unfold(value: bytes) -> bytes:
    return re.sub(rb"\r?\n(?=[ \t])", b"", value)


def from_domains(header: bytes) -> list[str]:
    """RFC 7489 6.6.1: the domains of the RFC5322.From addresses, lower case, in order."""
    domains: list[str] = []
    for f in header_fields(header):
        if f.lname != "from":
            continue
        for _, addr in email.utils.getaddresses([f.text()]):
            _, at, domain = addr.rpartition("@")
            domain = domain.strip().rstrip(".").lower()
            if at and domain and domain not in domains:
                domains.append(domain)
    return domains
