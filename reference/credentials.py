"""The seam between the access protocols (IMAP, POP3) and whatever checks passwords."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol


class TemporarilyUnavailable(Exception):
    """Login cannot succeed now, whatever the password (an account locked after failures)."""


class Authenticator(Protocol):
    """Checks a username and password; the directory implements it, tests use a dict."""

    async def authenticate(self, username: str, password: str, *, client: str = "") -> str | None:
        """The account's canonical address, or None when the credentials are wrong.

        ``client`` is the client's IP address, when known: failed logins are limited per
        address as well as per account.

        May raise :class:`TemporarilyUnavailable`: the protocol then says "try later" (IMAP
        ``[UNAVAILABLE]``, POP3 ``[SYS/TEMP]``) instead of "wrong password", so mail
        clients do not ask their user for a new one.
        """
        ...


class StaticAuthenticator:
    """Accounts from a mapping ``address -> password``: for tests and single-user staging."""

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._passwords = {user.lower(): pw for user, pw in passwords.items()}

    async def authenticate(self, username: str, password: str, *, client: str = "") -> str | None:
        user = username.lower()
        expected = self._passwords.get(user)
        # Constant-time compare, and compare even for unknown users so timing says nothing.
        ok = hmac.compare_digest((expected or "\0").encode(), password.encode())
        return user if ok and expected is not None else None


def parse_sasl_plain(message: bytes) -> tuple[str, str, str]:
    """RFC 4616 PLAIN: ``[authzid] NUL authcid NUL passwd`` -> the three, UTF-8 decoded.

    Raises ValueError for anything else (wrong field count, empty identity or password,
    fields over 255 octets, bad UTF-8).
    """
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2] or max(map(len, parts)) > 255:
        raise ValueError("malformed PLAIN message")
    authzid, authcid, password = (p.decode("utf-8") for p in parts)
    return authzid, authcid, password
