"""Applicability from what the server says: which IMAP revision a requirement's RFC needs.

RFC 9051 (IMAP4rev2) requirements apply to a server that advertises ``IMAP4rev2``, RFC 3501
(IMAP4rev1) ones to a server that advertises ``IMAP4rev1``: Dovecot 2.3 is a rev1 server, and
holding it to RFC 9051 (no ``\\Recent``, ESEARCH answers) would report false failures. The
capability is read once per target, over the endpoint the IMAP tests use.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterable, Mapping

from conformance.target import Target

__all__ = ["IMAP_REVISIONS", "imap_capabilities", "imap_revision_gap", "protocol_of"]

# requirement source -> the capability that says the server implements that revision
IMAP_REVISIONS: Mapping[str, str] = {"RFC3501": "IMAP4REV1", "RFC9051": "IMAP4REV2"}

# Keyed by the endpoints: a process may run several targets (pytester runs, one after another).
_CACHE: dict[tuple[str, ...], frozenset[str] | None] = {}


def imap_capabilities(target: Target) -> frozenset[str] | None:
    """The capabilities the target's IMAP server advertises (upper case); None without IMAP."""
    key = tuple(sorted(ep.url for ep in target.endpoints.values()))
    if key not in _CACHE:
        _CACHE[key] = _ask(target)
    return _CACHE[key]


def _ask(target: Target) -> frozenset[str] | None:
    role = "imaps" if "imaps" in target.endpoints else "imap"
    ep = target.endpoints.get(role)
    if ep is None:
        return None
    conn: imaplib.IMAP4
    if ep.implicit_tls:
        ctx = target.ssl_context()
        ctx.check_hostname = False  # the revision is the question here, not the name
        conn = imaplib.IMAP4_SSL(ep.host, ep.port, ssl_context=ctx, timeout=target.timeout)
    else:
        # Before STARTTLS: the revision atoms do not change with TLS (RFC 9051 6.2.1 only
        # adds and removes login mechanisms).
        conn = imaplib.IMAP4(ep.host, ep.port, timeout=target.timeout)
    try:
        return frozenset(c.upper() for c in conn.capabilities)
    finally:
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            conn.shutdown()


def imap_revision_gap(target: Target, sources: Iterable[str]) -> str | None:
    """Why a test of these requirement sources does not apply to this IMAP server, if so.

    A test applies when the server advertises the revision of at least one of its IMAP
    sources; a test with none (SMTP, POP3, platform policies) is never stopped here.
    """
    wanted = {IMAP_REVISIONS[s] for s in sources if s in IMAP_REVISIONS}
    if not wanted:
        return None
    caps = imap_capabilities(target)
    if caps is None or wanted & caps:
        return None
    names = " or ".join(sorted(w.replace("REV", "rev") for w in wanted))
    said = " ".join(sorted(c for c in caps if c.startswith("IMAP4")))
    return f"the IMAP server does not advertise {names} (it says {said or 'neither revision'})"


def protocol_of(name: str) -> str | None:
    """``smtp``, ``imap`` or ``pop3`` for a test module named test_<protocol>_*.py."""
    for protocol in ("smtp", "imap", "pop3"):
        if name.startswith(f"test_{protocol}_"):
            return protocol
    return None
