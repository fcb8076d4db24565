"""Authentication-Results (RFC 8601): our field, rendered with authres, and forged ones found.

RFC 8601 5: a border MTA adds one field naming its authserv-id and removes every field
that already claims that authserv-id, since it cannot have come from us.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dkim import DkimSignature
from reference.auth.dmarc import DmarcEvaluation
from reference.auth.spf import SpfCheck
from reference.mail.message import Field, Message, unfold

__all__ = ["authentication_results", "authserv_id_of", "forged_fields"]

FIELD = "Authentication-Results"
_AUTHSERV = re.compile(rb"^\s*(?:\([^)]*\)\s*)*([^\s;()]+)")


def _spf(check: SpfCheck) -> authres.AuthenticationResult:
    prop = "helo" if check.identity == "helo" else "mailfrom"
    value = check.domain if prop == "helo" else check.sender
    comment = check.reason if check.reason else None
    # A property needs a value (RFC 8601 2.2): an empty HELO name or sender gets none.
    props = [authres.core.AuthenticationResultProperty("smtp", prop, value)] if value else []
    return authres.AuthenticationResult(
        "spf",
        result=check.result.value,
        result_comment=_comment(comment),
        properties=props,
    )


def _dkim(sig: DkimSignature) -> authres.AuthenticationResult:
    props = []
    if sig.domain:
        props.append(authres.core.AuthenticationResultProperty("header", "d", sig.domain))
    if sig.selector:
        props.append(authres.core.AuthenticationResultProperty("header", "s", sig.selector))
    if sig.algorithm:
        props.append(authres.core.AuthenticationResultProperty("header", "a", sig.algorithm))
    if sig.b:
        props.append(authres.core.AuthenticationResultProperty("header", "b", sig.b))
    return authres.AuthenticationResult(
        "dkim",
        result=sig.result.value,
        result_comment=_comment(sig.reason or None),
        properties=props,
    )


def _dmarc(ev: DmarcEvaluation, action: str) -> authres.AuthenticationResult:
    comment = None
    if ev.record is not None:
        comment = f"p={ev.record.p.value} sp={ev.record.sp.value} dis={action}"
    elif ev.reason:
        comment = ev.reason
    return authres.dmarc.DMARCAuthenticationResult(
        result=ev.result.value,
        result_comment=_comment(comment),
        header_from=ev.from_domain,
    )


def _arc(chain: ArcChain, remote_ip: str) -> authres.AuthenticationResult:
    comment = None
    if chain.result is not ArcResult.NONE:
        comment = f"i={chain.instances}" + (f" {chain.reason}" if chain.reason else "")
    r = authres.arc.ARCAuthenticationResult(
        result=chain.result.value, result_comment=_comment(comment)
    )
    if remote_ip:
        r.smtp_remote_ip = remote_ip
    return r


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
    results: list[authres.core.BaseAuthenticationResult] = [_spf(c) for c in spf]
    results += [_dkim(s) for s in dkim] if dkim else []
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
