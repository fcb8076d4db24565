"""ARC (RFC 8617): verify a chain with dkimpy, and seal a message we forward.

As for DKIM, the key records are fetched first through our resolver; dkimpy then runs in
a worker thread with a dnsfunc that only reads them. Sealing uses dkimpy's own RSA, which
is slow (~60 seals/s, two signatures each) but only forwarded mail is sealed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from dataclasses import dataclass

import dkim as dkimpy  # type: ignore[import-untyped]

from reference.auth.keys import SigningKey
from reference.auth.lookup import DnsTempError, Lookup
from reference.mail.message import Message, unfold

__all__ = ["ArcChain", "ArcResult", "seal", "verify"]

_dkimpy_log = logging.getLogger("mailspec.auth.dkimpy")
ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
MAX_INSTANCES = 50  # RFC 8617 4.2.1


class ArcResult(enum.StrEnum):
    """RFC 8617 4.4: the chain validation status (cv)."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class ArcChain:
    """The verdict on a message's ARC chain."""

    result: ArcResult
    instances: int = 0
    sealers: tuple[str, ...] = ()  # d= of each ARC-Seal, newest first
    reason: str = ""

    @property
    def newest_sealer(self) -> str:
        return self.sealers[0] if self.sealers else ""


def _key_names(message: Message) -> tuple[set[str], list[tuple[int, str]]]:
    """The key records every ARC-Seal and ARC-Message-Signature needs; (i, d) of each seal."""
    names: set[str] = set()
    seals: list[tuple[int, str]] = []
    for f in message.fields:
        if f.lname not in ("arc-seal", "arc-message-signature"):
            continue
        tags = _tags(unfold(f.value))
        d, s = tags.get("d", ""), tags.get("s", "")
        if d and s:
            names.add(f"{s}._domainkey.{d}".lower())
        if f.lname == "arc-seal":
            i = tags.get("i", "")
            seals.append((int(i) if i.isdigit() else 0, d.lower()))
    return names, seals


def _tags(value: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.decode("utf-8", "replace").split(";"):
        k, eq, v = part.partition("=")
        if eq:
            out.setdefault(k.strip().lower(), re.sub(r"\s+", "", v))
    return out


async def verify(lookup: Lookup, message: Message | bytes) -> ArcChain:
    """RFC 8617 5.2: validate the chain; a DNS failure on a needed key fails it."""
    message = Message.of(message)
    names, seals = _key_names(message)
    if not seals and not names:
        return ArcChain(ArcResult.NONE, reason="no ARC sets")
    sealers = tuple(d for _, d in sorted(seals, reverse=True))
    if len(seals) > MAX_INSTANCES:
        return ArcChain(ArcResult.FAIL, len(seals), sealers, "too many ARC sets")
    keys: dict[bytes, bytes | None] = {}
    for name in sorted(names):
        try:
            txts = await lookup.txt(name)
        except DnsTempError as e:
            return ArcChain(ArcResult.FAIL, len(seals), sealers, f"key lookup: {e}")
        keys[name.encode()] = txts[0] if txts else None
    cv, reason = await asyncio.to_thread(_verify_sync, message.raw, keys)
    return ArcChain(cv, len(seals), sealers, reason)


def _verify_sync(message: bytes, keys: dict[bytes, bytes | None]) -> tuple[ArcResult, str]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return keys.get(name.rstrip(b".").lower())

    try:
        cv, _, reason = dkimpy.ARC(message, logger=_dkimpy_log).verify(dnsfunc=dnsfunc)
    except dkimpy.DKIMException as e:
        return ArcResult.FAIL, str(e)[:120]
    if cv == dkimpy.CV_Pass:
        return ArcResult.PASS, ""
    if cv == dkimpy.CV_None:
        return ArcResult.NONE, str(reason)
    return ArcResult.FAIL, str(reason)[:120]  # CV_Fail, or None for a terminated chain


async def seal(message: Message | bytes, key: SigningKey, authserv_id: str, *, now: float) -> bytes:
    """The ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) to put on
    top of a message we forward.

    ``message`` must carry our Authentication-Results field (authserv-id ``authserv_id``)
    with the arc= result of the chain as we received it: that is the cv= we seal with.
    Returns b"" when there is nothing to seal (no results of ours, or a chain that already
    failed). Only RSA keys seal (RFC 8617 uses rsa-sha256).
    """
    if key.algorithm != "rsa-sha256":
        raise ValueError("ARC seals with rsa-sha256 keys only")
    pem = key.private_pem()
    msg = Message.of(message)

    def run() -> bytes:
        arc = dkimpy.ARC(msg.raw, logger=_dkimpy_log)
        sets = arc.sign(
            key.selector.encode(),
            key.domain.encode(),
            pem,
            authserv_id.encode(),
            include_headers=[h.encode() for h in _AMS_HEADERS if msg.has(h)] + [b"from"],
            timestamp=int(now),
        )
        return b"".join(h if h.endswith(b"\r\n") else h + b"\r\n" for h in sets)

    return await asyncio.to_thread(run)


# Not DKIM-Signature: dkimpy refuses to sign it (RFC 6376 5.4's "SHOULD NOT"), and a
# forwarded or list copy nearly always carries one, so its seal would fail every time.
_AMS_HEADERS = (
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
)
