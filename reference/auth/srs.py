"""The Sender Rewriting Scheme as postsrsd implements it (SRS0/SRS1, HMAC-SHA1, day stamps).

Forwarded mail leaves with a return path in our own domain, so the destination's SPF check
sees a sender whose domain authorises our relay; a bounce to that address comes back to us,
and reversing it (hash and age checked) gives the original sender. The format is libsrs2's,
which postsrsd keeps: ``SRS0=HHHH=TT=orig.domain=orig.local@our.domain`` where HHHH is the
first four characters of base64(HMAC-SHA1(secret, lower(TT + domain + local))) and TT the
day number modulo 1024 in two base-32 characters; a forwarder of an SRS0 address makes an
SRS1 address that bounces to the first hop (the "guarded" scheme of the SRS paper).

No maintained Python library fits: srslib (last code from 2017) reads the wall clock
through a private attribute and has no type hints; pysrs's last release is from 2018.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Srs", "SrsError", "is_srs", "load_secrets"]

_DAY = 86400
_TIME_BASE = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base-32 alphabet of libsrs2's time stamps
_TIME_SLOTS = 1024  # two base-32 characters: the day number modulo 1024
HASH_LENGTH = 4
_SRS0 = re.compile(r"^srs0([-+=].*)$", re.IGNORECASE)
_SRS1 = re.compile(r"^srs1[-+=]([^=]*)=([^=]*)=([-+=].*)$", re.IGNORECASE)


class SrsError(ValueError):
    """An SRS address that must not be reversed: ``reason`` is "forged", "expired" or
    "malformed"; the message says what was wrong, for the log."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def is_srs(address: str) -> bool:
    """Whether the local part of ``address`` claims to be an SRS0 or SRS1 address."""
    local = address.rpartition("@")[0]
    return bool(re.match(r"^srs[01][-+=]", local, re.IGNORECASE))


def load_secrets(path: Path) -> list[bytes]:
    """The secrets in ``path`` (one a line; the first signs, all verify), made at first use.

    As postsrsd's secrets file: adding a new first line rotates the key while addresses
    signed with the older ones still reverse.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a name of its own, then linked into place: a node starting
        # beside this one reads a complete file or none (an O_EXCL file is seen empty
        # until it is written, which made a cluster's node fail to start).
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            with open(tmp, "x") as f:
                os.chmod(tmp, 0o600)
                f.write(secrets.token_urlsafe(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    lines = [line.strip() for line in path.read_text().splitlines()]
    found = [line.encode() for line in lines if line]
    if not found:
        raise ValueError(f"{path}: no SRS secret in it")
    return found


def _stamp(now: float) -> str:
    day = int(now // _DAY)
    return _TIME_BASE[(day >> 5) & 31] + _TIME_BASE[day & 31]


class Srs:
    """Rewrites senders into ``domain`` and reverses bounces, with the injected time ``now``."""

    def __init__(self, keys: Sequence[bytes], domain: str, *, max_age_days: int = 21) -> None:
        if not keys:
            raise ValueError("SRS needs at least one secret")
        self.keys = list(keys)
        self.domain = domain.lower()
        self.max_age_days = max_age_days

    def _hash(self, key: bytes, *parts: str) -> str:
        # libsrs2 hashes the lower-cased data: mail systems may change the case of a bounce.
        data = "".join(parts).lower().encode()
        digest = hmac.new(key, data, hashlib.sha1).digest()
        return base64.b64encode(digest).decode()[:HASH_LENGTH]

    def _check_hash(self, given: str, *parts: str) -> None:
        if len(given) < HASH_LENGTH:
            raise SrsError("forged", f"SRS hash {given!r} too short")
        # Compared without case (libsrs2 does so): some MTAs lower-case the local part.
        for key in self.keys:
            if hmac.compare_digest(self._hash(key, *parts).lower(), given[:HASH_LENGTH].lower()):
                return
        raise SrsError("forged", "SRS hash does not match")

    def _check_stamp(self, stamp: str, now: float) -> None:
        try:
            then = _TIME_BASE.index(stamp[0].upper()) * 32 + _TIME_BASE.index(stamp[1].upper())
        except (IndexError, ValueError):
            raise SrsError("malformed", f"bad SRS time stamp {stamp!r}") from None
        if len(stamp) != 2:
            raise SrsError("malformed", f"bad SRS time stamp {stamp!r}")
        today = int(now // _DAY) % _TIME_SLOTS
        # A stamp "from the future" is one from the previous 1024-day cycle: too old.
        while today < then:
            today += _TIME_SLOTS
        if today > then + self.max_age_days:
            raise SrsError("expired", f"SRS time stamp {stamp} older than {self.max_age_days} days")

    def forward(self, sender: str, now: float) -> str:
        """The return path for forwarding mail from ``sender`` (kept if already ours)."""
        local, at, host = sender.rpartition("@")
        if not at or not local or not host:
            return sender  # the null sender, or no domain: nothing to rewrite
        if host.lower() == self.domain:
            return sender
        key = self.keys[0]
        m1 = _SRS1.match(local)
        if m1:
            # A later hop of an SRS1 address: a new hash, still bouncing to the first hop.
            first_hop, opaque = m1.group(2), m1.group(3)
            return f"SRS1={self._hash(key, first_hop, opaque)}={first_hop}={opaque}@{self.domain}"
        m0 = _SRS0.match(local)
        if m0:
            # An SRS0 address of another forwarder: bounces go back to it (SRS1).
            opaque = m0.group(1)
            return f"SRS1={self._hash(key, host, opaque)}={host}={opaque}@{self.domain}"
        stamp = _stamp(now)
        return f"SRS0={self._hash(key, stamp, host, local)}={stamp}={host}={local}@{self.domain}"

    def reverse(self, address: str, now: float) -> str:
        """The address a bounce to ``address`` goes to; :class:`SrsError` if it must not."""
        local = address.rpartition("@")[0]
        m1 = _SRS1.match(local)
        if m1:
            given, first_hop, opaque = m1.groups()
            if not first_hop:
                raise SrsError("malformed", "no host in SRS1 address")
            self._check_hash(given, first_hop, opaque)
            return f"SRS0{opaque}@{first_hop}"
        m0 = _SRS0.match(local)
        if not m0:
            raise SrsError("malformed", "not an SRS address")
        fields = m0.group(1)[1:].split("=", 3)
        for count, what in enumerate(("hash", "timestamp", "host", "user"), start=1):
            if len(fields) < count or not fields[count - 1]:
                raise SrsError("malformed", f"no {what} in SRS0 address")
        given, stamp, host, user = fields
        self._check_hash(given, stamp, host, user)
        self._check_stamp(stamp, now)
        return f"{user}@{host}"
