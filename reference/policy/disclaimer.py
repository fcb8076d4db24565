"""Disclaimers: a domain's text appended to the mail its users submit, MIME-safely.

The texts live in files, one pair per domain: ``<dir>/<domain>.txt`` (plain text, UTF-8)
and, optionally, ``<dir>/<domain>.html`` (an HTML fragment; without it the text is used,
escaped). A domain without a ``.txt`` file gets no disclaimer.

Only the body parts a reader sees are changed, and nothing else byte for byte: a
``text/plain`` or ``text/html`` message; both alternatives of ``multipart/alternative``;
the first part (the body, not the attachments) of ``multipart/mixed`` and
``multipart/related``. Each part is decoded (its transfer encoding, then its charset),
extended and encoded again the same way; when the charset cannot carry the text it
becomes UTF-8 (HTML keeps its charset and uses character references). Signed or
encrypted mail (``multipart/signed``, ``multipart/encrypted``, S/MIME, inline PGP) is
left alone: a change would break the signature, or could not be read at all.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.policy
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reference.directory import Directory, DirectoryError, split_address
from reference.mail.message import Message, header_fields, split_header
from reference.policy import CONTINUE, Action, Check, CheckResult, Transaction
from reference.policy.submission import from_addresses

__all__ = ["Disclaimer", "DisclaimerCheck", "DisclaimerStore", "append_disclaimer"]

_MAX_DEPTH = 8
_UNTOUCHABLE = ("multipart/signed", "multipart/encrypted")
_PGP = re.compile(rb"-----BEGIN PGP (SIGNED )?MESSAGE-----")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Disclaimer:
    text: str  # plain text, lines separated by "\n"
    html: str  # an HTML fragment

    @classmethod
    def from_text(cls, text: str, html_fragment: str | None = None) -> Disclaimer:
        text = text.replace("\r\n", "\n").strip("\n")
        if html_fragment is None:
            lines = "<br>\n".join(html.escape(line) for line in text.split("\n"))
            html_fragment = f'<div class="disclaimer">{lines}</div>'
        return cls(text, html_fragment.replace("\r\n", "\n").strip("\n"))


class DisclaimerStore:
    """The disclaimer files of a directory, read again when they change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[tuple[float, float], Disclaimer | None]] = {}

    def for_domain(self, domain: str) -> Disclaimer | None:
        txt, htm = self.root / f"{domain}.txt", self.root / f"{domain}.html"
        try:
            stamp = (txt.stat().st_mtime, htm.stat().st_mtime if htm.exists() else 0.0)
        except OSError:
            return None
        cached = self._cache.get(domain)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            text = txt.read_text(encoding="utf-8")
            fragment = htm.read_text(encoding="utf-8") if htm.exists() else None
        except (OSError, UnicodeDecodeError):
            return None
        found = Disclaimer.from_text(text, fragment) if text.strip() else None
        self._cache[domain] = (stamp, found)
        return found


def append_disclaimer(msg: Message | bytes, disclaimer: Disclaimer) -> bytes | None:
    """The message with the disclaimer in its visible body parts; None: left untouched."""
    m = Message.of(msg)
    return _parts(m.header, m.blank, m.body, disclaimer, top=True, depth=0)


def _info(header: bytes) -> email.message.Message:
    # Only the header is parsed (compat32 keeps unknown and malformed fields as they are).
    return email.message_from_bytes(header + b"\r\n", policy=email.policy.compat32)


def _entity(raw: bytes, d: Disclaimer, *, top: bool, depth: int) -> bytes | None:
    return _parts(*split_header(raw), d, top=top, depth=depth)


def _parts(
    header: bytes, blank: bytes, body: bytes, d: Disclaimer, *, top: bool, depth: int
) -> bytes | None:
    if depth > _MAX_DEPTH:
        return None
    if not blank:
        return None  # a part without a body: nothing to append to
    info = _info(header)
    ctype = info.get_content_type()
    if ctype in _UNTOUCHABLE or "pkcs7" in ctype or "pgp" in ctype:
        return None
    if info.get_content_disposition() == "attachment":
        return None
    if ctype.startswith("multipart/"):
        new_body = _multipart(body, info, d, depth)
        return None if new_body is None else header + blank + new_body
    if ctype in ("text/plain", "text/html"):
        return _leaf(header, blank, body, info, d, html_part=ctype == "text/html", top=top)
    return None


def _multipart(body: bytes, info: email.message.Message, d: Disclaimer, depth: int) -> bytes | None:
    boundary = info.get_boundary()
    if not boundary:
        return None
    # RFC 2046 5.1.1: a delimiter is CRLF "--" boundary at the start of a line; the CRLF
    # before it belongs to it. Transport padding may follow it on its line.
    mark = re.escape(boundary.encode("ascii", "replace"))
    delim = re.compile(rb"(?:\A|\r\n)--" + mark + rb"(--)?[ \t]*(?:\r\n|\Z)")
    marks = list(delim.finditer(body))
    closing = next((i for i, m in enumerate(marks) if m.group(1)), None)
    if closing is None or closing == 0:
        return None  # malformed: leave it as it came
    marks = marks[: closing + 1]
    parts = [body[marks[i].end() : marks[i + 1].start()] for i in range(closing)]
    targets = range(len(parts)) if info.get_content_subtype() == "alternative" else range(1)
    changed = False
    for i in targets:
        new = _entity(parts[i], d, top=False, depth=depth + 1)
        if new is not None:
            parts[i], changed = new, True
    if not changed:
        return None
    out = [body[: marks[0].end()]]
    for i, part in enumerate(parts):
        out.append(part)
        out.append(body[marks[i + 1].start() : marks[i + 1].end()])
    out.append(body[marks[closing].end() :])
    return b"".join(out)


def _leaf(
    header: bytes,
    blank: bytes,
    body: bytes,
    info: email.message.Message,
    d: Disclaimer,
    *,
    html_part: bool,
    top: bool,
) -> bytes | None:
    cte = str(info.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    charset = info.get_content_charset() or "us-ascii"
    try:
        if cte in ("7bit", "8bit", "binary"):
            data = body
        elif cte == "quoted-printable":
            data = binascii.a2b_qp(body)
        elif cte == "base64":
            data = base64.b64decode(body)
        else:
            return None
        if _PGP.search(data):
            return None  # inline PGP: signed or encrypted text
        text = data.decode(charset)
    except (ValueError, LookupError):
        return None  # an undecodable part is left as it came
    nl = "\r\n" if "\r\n" in text or "\n" not in text else "\n"
    if html_part:
        snippet = nl + d.html.replace("\n", nl) + nl
        ends = list(_BODY_END.finditer(text))
        at = ends[-1].start() if ends else len(text)
        text = text[:at] + snippet + text[at:]
        new_data = text.encode(charset, "xmlcharrefreplace")
        new_charset = None
    else:
        if text and not text.endswith(("\n", "\r")):
            text += nl
        text += nl + d.text.replace("\n", nl) + nl
        try:
            new_data, new_charset = text.encode(charset), None
        except UnicodeEncodeError:
            new_data, new_charset = text.encode("utf-8"), "utf-8"
    new_cte = None
    if cte == "base64":
        encoded = base64.encodebytes(new_data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable" or (cte == "7bit" and not new_data.isascii()):
        encoded = _qp(new_data)
        new_cte = None if cte == "quoted-printable" else "quoted-printable"
    else:
        encoded = new_data
    if new_charset or new_cte:
        header = _retyped(header, info, new_charset, new_cte, top=top)
    return header + blank + encoded


def _qp(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7) with CRLF line breaks, soft ones included."""
    lines = re.split(rb"\r\n|\n", data)
    return b"\r\n".join(
        binascii.b2a_qp(line, quotetabs=False, istext=False).replace(b"=\n", b"=\r\n")
        for line in lines
    )


def _retyped(
    header: bytes,
    info: email.message.Message,
    charset: str | None,
    cte: str | None,
    *,
    top: bool,
) -> bytes:
    """The part's header with a new charset and/or transfer encoding, nothing else changed."""
    fields = header_fields(header)
    names = {f.lname for f in fields}
    out: list[bytes] = []
    for f in fields:
        if f.lname == "content-type" and charset:
            continue
        if f.lname == "content-transfer-encoding" and cte:
            continue
        out.append(f.raw)
    added: list[bytes] = []
    if top and "mime-version" not in names:
        added.append(b"MIME-Version: 1.0\r\n")
    if charset:
        params = [(k, v) for k, v in info.get_params(failobj=[])[1:] if k.lower() != "charset"]
        extra = "".join(f'; {k}="{v}"' if v else f"; {k}" for k, v in params)
        added.append(
            f"Content-Type: {info.get_content_type()}; charset={charset}{extra}\r\n".encode()
        )
    if cte:
        added.append(f"Content-Transfer-Encoding: {cte}\r\n".encode())
    return b"".join(out) + b"".join(added)


class DisclaimerCheck(Check):
    """Submission: append the disclaimer of the author's domain (From:, else the user's)."""

    name = "disclaimer"

    def __init__(self, store: DisclaimerStore, directory: Directory) -> None:
        self.store = store
        self.directory = directory

    def domain_of(self, msg: Message | bytes, user: str) -> str | None:
        candidates: Sequence[str] = [*(from_addresses(Message.of(msg)) or [])[:1], user]
        for address in candidates:
            try:
                _, domain = split_address(address)
            except DirectoryError:
                continue
            if self.directory.is_local_domain(domain):
                return domain
        return None

    async def data(self, tx: Transaction) -> CheckResult:
        if tx.role != "submission" or tx.user is None:
            return CONTINUE
        msg = tx.msg
        domain = self.domain_of(msg, tx.user)
        if domain is None:
            return CONTINUE
        disclaimer = self.store.for_domain(domain)
        if disclaimer is None:
            return CONTINUE
        new = append_disclaimer(msg, disclaimer)
        if new is None:
            return CONTINUE
        return CheckResult(Action.CONTINUE, reason=f"disclaimer of {domain}", message=Message(new))
