"""Authentication-Results (RFC 8601): our field, and forged ones found.

Rendered here as authres renders it (the tests parse it with authres and compare the two
renderings): building authres's objects cost more than all of DMARC on every message.

RFC 8601 5: a border MTA adds one field naming its authserv-id and removes every field
that already claims that authserv-id, since it cannot have come from us.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dkim import DkimSignature
from reference.auth.dmarc import DmarcEvaluation
from reference.auth.spf import SpfCheck
from reference.mail.message import Field, Message, unfold

__all__ = ["authentication_results", "authserv_id_of", "forged_fields"]

FIELD = "Authentication-Results"
_AUTHSERV = re.compile(rb"^\s*(?:\([^)]*\)\s*)*([^\s;()]+)")


# RFC 2045 token: a value that needs no quotes (authres's test, "$" and all).
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`{|}~-]+$")


def _value(value: str) -> str:
    """A property value, quoted when it must be (RFC 8601 2.2), as authres quotes it."""
    if "@" in value or _TOKEN.match(value):
        return value
    return '"' + re.sub(r'(["\\])', r"\\\1", value) + '"'


def _clause(method: str, result: str, comment: str | None, *props: tuple[str, str]) -> str:
    """``method=result (comment) ptype.property=value ...``; properties without a value
    are left out (RFC 8601 2.2 gives every property one)."""
    out = f"{method}={result}"
    if comment:
        out += f" ({comment})"
    return out + "".join(f" {name}={_value(value)}" for name, value in props if value)


def _spf(check: SpfCheck) -> str:
    prop = "helo" if check.identity == "helo" else "mailfrom"
    value = check.domain if prop == "helo" else check.sender
    return _clause("spf", check.result.value, _comment(check.reason), (f"smtp.{prop}", value))


def _dkim(sig: DkimSignature) -> str:
    return _clause(
        "dkim",
        sig.result.value,
        _comment(sig.reason),
        ("header.d", sig.domain),
        ("header.s", sig.selector),
        ("header.a", sig.algorithm),
        ("header.b", sig.b),
    )


def _dmarc(ev: DmarcEvaluation, action: str) -> str:
    comment = None
    if ev.record is not None:
        comment = f"p={ev.record.p.value} sp={ev.record.sp.value} dis={action}"
    elif ev.reason:
        comment = ev.reason
    return _clause("dmarc", ev.result.value, _comment(comment), ("header.from", ev.from_domain))


def _arc(chain: ArcChain, remote_ip: str) -> str:
    comment = None
    if chain.result is not ArcResult.NONE:
        comment = f"i={chain.instances}" + (f" {chain.reason}" if chain.reason else "")
    return _clause("arc", chain.result.value, _comment(comment), ("smtp.remote-ip", remote_ip))


def _comment(text: str | None) -> str | None:
    """A comment cannot hold unbalanced parentheses or line breaks."""
    if not text:
        return None
    return re.sub(r"[()\\\r\n]", " ", text).strip()[:160] or None


def authentication_results(
    authserv_id: str,
    *,
    spf: Sequence[SpfCheck] = (),
    dkim: Sequence[DkimSignature] = (),
    dmarc: Sequence[tuple[DmarcEvaluation, str]] = (),
    arc: ArcChain | None = None,
    remote_ip: str = "",
) -> bytes:
    """One folded Authentication-Results field, CRLF included; no results: "none"."""
    results = [_spf(c) for c in spf]
    results += [_dkim(s) for s in dkim]
    results += [_dmarc(ev, action) for ev, action in dmarc]
    if arc is not None:
        results.append(_arc(arc, remote_ip))
    value = authserv_id + ";" + (";".join(f"\r\n\t{r}" for r in results) if results else " none")
    return f"{FIELD}: {value}\r\n".encode("utf-8", "replace")


def authserv_id_of(f: Field) -> str:
    """The authserv-id an Authentication-Results field claims, lower case ("" if none)."""
    m = _AUTHSERV.match(unfold(f.value))
    return m.group(1).decode("utf-8", "replace").lower() if m else ""


def forged_fields(message: Message | bytes, authserv_id: str) -> list[bytes]:
    """Raw Authentication-Results fields claiming our authserv-id (RFC 8601 5)."""
    ours = authserv_id.lower()
    return [
        f.raw
        for f in Message.of(message).get_all("authentication-results")
        if authserv_id_of(f) == ours
    ]
