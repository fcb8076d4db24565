"""DKIM (RFC 6376, RFC 8463): verify and sign with our canonicalisation and `cryptography`.

dkimpy parses and validates the tag lists and key records; the canonicalisation is ours
and `cryptography` does the RSA and Ed25519 work: dkimpy's pure-Python RSA signs ~124
messages/s, and its verification cost ~2 ms per message. Verification runs with the key
records fetched beforehand through our resolver: on the loop for an ordinary message (a
hash and an RSA check, ~0.1 ms, cheaper than the hop to a thread), in a worker thread for a
large one, whose canonicalisation would hold the loop. The tests verify
what we sign with dkimpy, and dkimpy's signed messages and vectors with ours, so each
implementation checks the other.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.util import (  # type: ignore[import-untyped]
    InvalidTagValueList,
    parse_tag_value,
)

from reference.auth.keys import ALGORITHMS, KeyStore, SigningKey
from reference.auth.lookup import DnsTempError, Lookup
from reference.log import event
from reference.mail.message import Field, Message, unfold

__all__ = [
    "OVERSIGNED",
    "SIGNED_HEADERS",
    "DkimResult",
    "DkimSignature",
    "DomainSigner",
    "body_hash",
    "sign",
    "signature_fields",
    "verify",
]

log = logging.getLogger("mailspec.auth.dkim")
_dkimpy_log = logging.getLogger("mailspec.auth.dkimpy")
_dkimpy_log.setLevel(logging.CRITICAL)  # dkimpy logs every failed signature as an error

_dkimpy_validate = dkimpy.validate_signature_fields


def _validate_off_the_wall_clock(
    sig: dict[bytes, bytes], mandatory_fields: Any = None, arc: bool = False
) -> None:
    """dkimpy judges t= and x= on the wall clock; we judge them on the injected Clock
    (in :func:`verify`) and hand dkimpy the other fields only."""
    rest = {k: v for k, v in sig.items() if k != b"x"}
    if b"t" in rest:
        rest[b"t"] = b"0"
    if mandatory_fields is None:
        return _dkimpy_validate(rest, arc=arc)  # type: ignore[no-any-return]
    return _dkimpy_validate(rest, mandatory_fields, arc)  # type: ignore[no-any-return]


dkimpy.validate_signature_fields = _validate_off_the_wall_clock

MIN_RSA_BITS = 1024  # RFC 8301 3.2
MAX_SIGNATURES = 10  # more is abuse: the rest are reported as policy, not evaluated
INLINE_BODY = 64 << 10  # bodies up to this size are verified on the loop, larger in a thread

# What a reader sees, or what changes how it is shown (RFC 6376 5.4.1).
SIGNED_HEADERS = (
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "sender",
)
# Signed once more than they occur, so that none can be added without breaking the
# signature (RFC 6376 8.15); From above all.
OVERSIGNED = ("from", "reply-to", "subject", "date", "to", "cc")


class DkimResult(enum.StrEnum):
    """RFC 8601 2.7.1."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    POLICY = "policy"
    NEUTRAL = "neutral"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True)
class DkimSignature:
    """The verdict on one DKIM-Signature field."""

    result: DkimResult
    domain: str = ""  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    identity: str = ""  # i=
    b: str = ""  # the first characters of b=, for header.b (RFC 6008)
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.result is DkimResult.PASS


# -- canonicalisation (RFC 6376 3.4) ---------------------------------------------------------

# Runs of WSP that relaxed canonicalisation changes: a lone SP is left alone, which makes
# the substitution three times faster on ordinary text.
_WSP = re.compile(rb" [ \t]+|\t[ \t]*")
_EOL = re.compile(rb"\r?\n")


def relaxed_header(name: str, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, runs of WSP as one SP, no edges."""
    v = _WSP.sub(b" ", unfold(value).replace(b"\r", b"").replace(b"\n", b"")).strip(b" ")
    return name.strip().lower().encode("ascii") + b":" + v + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4 (line ends normalised to CRLF first).

    Whole-body operations, not a loop over lines: a line at a time costs four times more.
    """
    b = body if body.count(b"\n") == body.count(b"\r\n") else _EOL.sub(b"\r\n", body)
    b = _WSP.sub(b" ", b).replace(b" \r\n", b"\r\n")
    end = len(b)
    if end and b[end - 1] == 0x20:
        end -= 1  # the last line has no line end, but its trailing WSP goes all the same
    while end >= 2 and b.startswith(b"\r\n", end - 2):
        end -= 2  # empty lines at the end are ignored
    return b[:end] + b"\r\n" if end else b""


def body_hash(body: bytes) -> str:
    """bh= of a relaxed-canonicalised body, SHA-256."""
    return base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")


def _select(fields: Sequence[Field], names: Sequence[str]) -> list[Field | None]:
    """RFC 6376 5.4.2: each name takes the bottom-most instance not taken yet."""
    unused: dict[str, list[Field]] = {}  # by name, top to bottom
    for f in fields:
        unused.setdefault(f.lname, []).append(f)
    out: list[Field | None] = []
    for name in names:
        left = unused.get(name)
        # A name signed more often than present contributes nothing.
        out.append(left.pop() if left else None)
    return out


# -- signing ---------------------------------------------------------------------------------


def _fold_tags(tags: list[tuple[str, str]]) -> str:
    """Tags joined with "; ", folded before a tag that would pass 78 columns."""
    out = "DKIM-Signature:"
    line = len(out)
    for i, (k, v) in enumerate(tags):
        piece = f" {k}={v}" + (";" if i < len(tags) - 1 else "")
        if line + len(piece) > 78 and line > len("DKIM-Signature:"):
            out += "\r\n\t"
            piece = piece[1:]
            line = 8
        out += piece
        line += len(piece)
    return out


def _wrap(value: str, first: int, width: int = 72) -> str:
    """A base64 value cut with folding whitespace (ignored by the verifier)."""
    chunks = [value[:first]] + [value[i : i + width] for i in range(first, len(value), width)]
    return "\r\n\t ".join(c for c in chunks if c)


def sign(
    message: Message | bytes,
    keys: Sequence[SigningKey],
    *,
    now: float,
    headers: Sequence[str] = SIGNED_HEADERS,
    oversign: Sequence[str] = OVERSIGNED,
    expire: float | None = None,
) -> bytes:
    """DKIM-Signature fields (relaxed/relaxed, one per key) to put on top of ``message``.

    ``expire`` sets x= (RFC 6376 3.5), seconds since the epoch; none by default.

    CPU work: call it through asyncio.to_thread on a server's loop.
    """
    msg = Message.of(message)
    body, fields = msg.body, msg.fields
    present = [f.lname for f in fields]
    names: list[str] = []
    for name in headers:
        count = present.count(name) + (1 if name in oversign else 0)
        names.extend([name] * count)
    if "from" not in names:
        names.append("from")  # RFC 6376 5.4: From MUST be signed
    bh = body_hash(body)
    signed = b"".join(
        relaxed_header(f.name, f.value) for f in _select(fields, names) if f is not None
    )
    out: list[bytes] = []
    for key in keys:
        tags = [
            ("v", "1"),
            ("a", key.algorithm),
            ("c", "relaxed/relaxed"),
            ("d", key.domain),
            ("s", key.selector),
            ("t", str(int(now))),
            *([("x", str(int(expire)))] if expire is not None else []),
            ("h", ":".join(names)),
            ("bh", bh),
            ("b", ""),
        ]
        unsigned = _fold_tags(tags)
        name, _, value = unsigned.partition(":")
        data = signed + relaxed_header(name, value.encode("ascii"))[:-2]  # RFC 6376 3.7
        if isinstance(key.key, rsa.RSAPrivateKey):
            sig = key.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            sig = key.key.sign(hashlib.sha256(data).digest())  # RFC 8463 3: sign the hash
        b64 = base64.b64encode(sig).decode("ascii")
        last_line = unsigned.rsplit("\n", 1)[-1]
        room = max(8, 78 - len(last_line))
        out.append((unsigned + _wrap(b64, room) + "\r\n").encode("ascii"))
    return b"".join(out)


class DomainSigner:
    """Signs for one of our domains with its keys in a KeyStore, made at first use: what
    submitted mail and a list's copies are signed with (one code path for both)."""

    def __init__(
        self,
        keys: KeyStore,
        *,
        selector: str,
        algorithms: Sequence[str] = tuple(ALGORITHMS),
        generate: bool = True,
    ) -> None:
        self.keys = keys
        self.selector = selector
        self.algorithms = tuple(algorithms)
        self.generate = generate

    def keys_for(self, domain: str) -> list[SigningKey]:
        """The domain's keys (made where missing, with ``generate``); raises KeyStoreError."""
        keys = self.keys.load(domain, self.selector, self.algorithms)
        if len(keys) < len(self.algorithms) and self.generate:
            keys = self.keys.generate(domain, self.selector, self.algorithms)
            event(
                log,
                "dkim.keygen",
                domain=domain,
                selector=self.selector,
                records=" | ".join(f"{k.record_name} TXT {k.public_record()}" for k in keys),
            )
        return keys

    def sign(self, message: Message | bytes, domain: str, *, now: float) -> bytes:
        """DKIM-Signature fields of ``domain`` for ``message`` (b"" without keys); CPU and
        disk work: call it through asyncio.to_thread on a server's loop."""
        keys = self.keys_for(domain)
        return sign(message, keys, now=now) if keys else b""


# -- verification ----------------------------------------------------------------------------


def signature_fields(message: Message | bytes) -> list[Field]:
    return Message.of(message).get_all("dkim-signature")


def _tags(f: Field) -> dict[bytes, bytes]:
    tags: dict[bytes, bytes] = parse_tag_value(unfold(f.value))
    return tags


def _txt(s: bytes) -> str:
    return s.decode("utf-8", "replace")


async def verify(
    lookup: Lookup, message: Message | bytes, *, now: float, max_signatures: int = MAX_SIGNATURES
) -> list[DkimSignature]:
    """Every DKIM-Signature, in order (none: an empty list); ``now`` judges x= expiry."""
    message = Message.of(message)
    fields = signature_fields(message)
    results: list[DkimSignature | None] = [None] * len(fields)
    keys: dict[bytes, bytes | None] = {}  # record name -> TXT value (None: none there)
    tag_lists: dict[int, dict[bytes, bytes]] = {}
    pending: list[int] = []
    for idx, f in enumerate(fields):
        if idx >= max_signatures:
            results[idx] = DkimSignature(DkimResult.POLICY, reason="too many signatures")
            continue
        try:
            tags = tag_lists[idx] = _tags(f)
        except InvalidTagValueList as e:
            results[idx] = DkimSignature(DkimResult.PERMERROR, reason=f"bad tag list: {e}")
            continue
        base = DkimSignature(
            DkimResult.NONE,
            domain=_txt(tags.get(b"d", b"")).lower(),
            selector=_txt(tags.get(b"s", b"")),
            algorithm=_txt(tags.get(b"a", b"")),
            identity=_txt(tags.get(b"i", b"")),
            b="".join(_txt(tags.get(b"b", b"")).split())[:8],
        )
        missing = [t for t in ("v", "a", "b", "bh", "d", "h", "s") if t.encode() not in tags]
        if missing:
            results[idx] = _with(base, DkimResult.PERMERROR, f"missing tag {missing[0]}=")
            continue
        if base.algorithm not in ("rsa-sha256", "ed25519-sha256"):
            # RFC 8301 3.1: rsa-sha1 MUST NOT be considered valid.
            results[idx] = _with(base, DkimResult.PERMERROR, f"algorithm {base.algorithm}")
            continue
        problem = _timestamps(tags, now)
        if problem is not None:
            results[idx] = _with(base, *problem)
            continue
        name = f"{base.selector}._domainkey.{base.domain}".encode()
        if name not in keys:
            try:
                txts = await lookup.txt(name.decode())
            except DnsTempError as e:
                results[idx] = _with(base, DkimResult.TEMPERROR, f"key lookup: {e}")
                continue
            keys[name] = txts[0] if txts else None
        if keys[name] is None:
            results[idx] = _with(base, DkimResult.PERMERROR, "no key for signature")
            continue
        results[idx] = base
        pending.append(idx)
    if pending:
        work = (message, pending, results, keys, tag_lists)
        if len(message.body) <= INLINE_BODY:
            done = _verify_sync(*work)
        else:
            done = await asyncio.to_thread(_verify_sync, *work)
        for idx, r in zip(pending, done, strict=True):
            results[idx] = r
    return [r for r in results if r is not None]


def _timestamps(tags: dict[bytes, bytes], now: float) -> tuple[DkimResult, str] | None:
    """RFC 6376 3.5 t= and x=, judged on the caller's clock.

    A t= in the future is accepted (RFC 6376 3.5 lets verifiers ignore such signatures,
    but senders' clocks run ahead, and a test target's clock may run behind).
    """
    t, x = tags.get(b"t"), tags.get(b"x")
    if (t is not None and not t.isdigit()) or (x is not None and not x.isdigit()):
        return DkimResult.PERMERROR, "bad t= or x= tag"
    if x is not None and t is not None and int(x) < int(t):
        return DkimResult.PERMERROR, "x= is before t="
    if x is not None and int(x) < now:  # an expired signature does not verify
        return DkimResult.FAIL, "signature expired"
    return None


def _with(base: DkimSignature, result: DkimResult, reason: str) -> DkimSignature:
    return DkimSignature(
        result, base.domain, base.selector, base.algorithm, base.identity, base.b, reason
    )


_SIMPLE_EOL = re.compile(rb"\r?\n")
# dkimpy's RE_BTAG, matching the same text 14 times faster: its FWS,
# ``(?:(?:\s*\r?\n)?\s+)?``, matches any run of white space as ``\s*`` does, and the
# greedy ``(?:FWS[a-zA-Z0-9+/=])*`` takes runs of base64 and the white space before more.
_BTAG = re.compile(rb"([;\s]b\s*=)(?:[a-zA-Z0-9+/=]+|\s+(?=[a-zA-Z0-9+/=]))*(?:\r?\n\Z)?")
_MAX_KEYS = 1000  # parsed public keys kept, by their DNS record


@dataclass(frozen=True)
class _PublicKey:
    kind: str  # "rsa" or "ed25519", as in a=
    key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    bits: int


_public_keys: dict[bytes, _PublicKey] = {}


def _public_key(name: bytes, record: bytes) -> _PublicKey:
    """The key of a DKIM key record (RFC 6376 3.6.1), parsed by dkimpy, kept by record.

    Raises dkimpy's errors, or ValueError, on a record that holds no usable key.
    """
    got = _public_keys.get(record)
    if got is not None:
        return got
    pk, bits, ktag, tlsrpt_only = dkimpy.evaluate_pk(name, record)
    if tlsrpt_only:
        raise dkimpy.KeyFormatError("key is for TLSRPT only (s=tlsrpt)")
    if ktag == b"rsa":
        key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey = rsa.RSAPublicNumbers(
            pk["publicExponent"], pk["modulus"]
        ).public_key()
    else:
        key = ed25519.Ed25519PublicKey.from_public_bytes(bytes(pk))
    got = _PublicKey(ktag.decode(), key, bits)
    if len(_public_keys) >= _MAX_KEYS:
        _public_keys.clear()
    _public_keys[record] = got
    return got


def _verify_sync(
    message: Message,
    pending: list[int],
    bases: list[DkimSignature | None],
    keys: dict[bytes, bytes | None],
    tag_lists: dict[int, dict[bytes, bytes]],
) -> list[DkimSignature]:
    """RFC 6376 6.1.3 for each pending signature: dkimpy parses tags and key records, the
    canonicalisation is ours (the one signing uses) and `cryptography` checks the signature:
    dkimpy's pure-Python RSA and parsing cost about 2 ms per message."""
    fields = signature_fields(message)
    bodies: dict[tuple[bytes, int | None], bytes] = {}
    out: list[DkimSignature] = []
    for idx in pending:
        base = _b(bases[idx])
        name = f"{base.selector}._domainkey.{base.domain}".encode()
        record = keys[name]
        assert record is not None  # verify() only passes signatures with a key record
        try:
            key = _public_key(name, record)
        except (dkimpy.DKIMException, ValueError) as e:  # binascii.Error is a ValueError
            out.append(_with(base, DkimResult.PERMERROR, f"key: {e}"))
            continue
        out.append(_verify_one(message, fields[idx], tag_lists[idx], key, base, bodies))
    return out


def _verify_one(
    message: Message,
    field: Field,
    tags: dict[bytes, bytes],
    key: _PublicKey,
    base: DkimSignature,
    bodies: dict[tuple[bytes, int | None], bytes],
) -> DkimSignature:
    try:
        dkimpy.validate_signature_fields(tags)
    except dkimpy.DKIMException as e:
        return _with(base, DkimResult.PERMERROR, str(e)[:120])
    if not base.algorithm.startswith(key.kind + "-"):
        # RFC 6376 6.1.2 step 8: an inappropriate key algorithm
        return _with(base, DkimResult.PERMERROR, f"key: k={key.kind} does not fit a=")
    if key.kind == "rsa" and key.bits < MIN_RSA_BITS:
        return _with(base, DkimResult.PERMERROR, f"key: public key too small: {key.bits}")
    header_c, _, body_c = tags.get(b"c", b"simple/simple").partition(b"/")
    body_c = body_c or b"simple"
    if header_c not in (b"simple", b"relaxed") or body_c not in (b"simple", b"relaxed"):
        return _with(base, DkimResult.PERMERROR, "invalid c= value")
    length = int(tags[b"l"]) if b"l" in tags else None
    canon_body = bodies.get((body_c, length))
    if canon_body is None:
        canon = relaxed_body(message.body) if body_c == b"relaxed" else _simple_body(message.body)
        canon_body = bodies[(body_c, length)] = hashlib.sha256(canon[:length]).digest()
    try:
        bh = base64.b64decode(b"".join(tags[b"bh"].split()))  # FWS out (RFC 6376 3.5)
        signature = base64.b64decode(b"".join(tags[b"b"].split()))
    except ValueError:
        return _with(base, DkimResult.PERMERROR, "b= or bh= is not base64")
    if bh != canon_body:
        return _with(base, DkimResult.FAIL, "body hash did not verify")
    names = [n.strip().lower() for n in tags[b"h"].decode("ascii", "replace").split(":")]
    if "from" in names:
        names.append("from")  # a second From, if any, is hashed too: it breaks the signature
    relaxed = header_c == b"relaxed"
    data = b"".join(
        _canon_header(f.name, f.raw, relaxed)
        for f in _select(message.fields, names)
        if f is not None
    )
    # The signature's own field with an empty b= and no line end (RFC 6376 3.7), with
    # dkimpy's expression for "the b= value", the one its test vectors are made with.
    own = _BTAG.sub(b"\\1", field.raw.split(b":", 1)[1])
    data += _canon_header(field.name, field.name.encode() + b":" + own, relaxed).rstrip()
    try:
        if isinstance(key.key, rsa.RSAPublicKey):
            key.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.key.verify(signature, hashlib.sha256(data).digest())  # RFC 8463 3
    except InvalidSignature:
        return _with(base, DkimResult.FAIL, "signature did not verify")
    return _length_check(base, tags, message)


def _canon_header(name: str, raw: bytes, relaxed: bool) -> bytes:
    """RFC 6376 3.4.1 and 3.4.2; ``raw`` is the whole field as written."""
    if relaxed:
        return relaxed_header(name, raw.split(b":", 1)[1].rstrip(b"\r\n"))
    return _SIMPLE_EOL.sub(b"\r\n", raw if raw.endswith(b"\n") else raw + b"\r\n")


def _b(base: DkimSignature | None) -> DkimSignature:
    assert base is not None
    return base


def _length_check(base: DkimSignature, tags: dict[bytes, bytes], message: Message) -> DkimSignature:
    """l=: a signature covering only part of the body vouches for nothing after it.

    RFC 6376 8.2: content appended after l= can be anything. Such a signature is reported
    as "policy" (not acceptable to us), which DMARC does not count as a pass; one whose l=
    covers the whole body is an ordinary pass.
    """
    length = tags.get(b"l")
    if length is None:
        return _with(base, DkimResult.PASS, "")
    body = message.body
    c = tags.get(b"c", b"simple/simple").split(b"/")
    body_c = c[1] if len(c) > 1 else b"simple"
    canon = relaxed_body(body) if body_c.strip() == b"relaxed" else _simple_body(body)
    if int(length) > len(canon):
        return _with(base, DkimResult.PERMERROR, "l= is longer than the body")
    if int(length) < len(canon):
        return _with(base, DkimResult.POLICY, f"body signed only up to l={int(length)}")
    return _with(base, DkimResult.PASS, "")


def _simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3."""
    b = _EOL.sub(b"\r\n", body)
    while b.endswith(b"\r\n\r\n"):
        b = b[:-2]
    if not b.endswith(b"\r\n"):
        b += b"\r\n"
    return b
