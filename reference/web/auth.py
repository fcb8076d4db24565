"""Who calls the admin API: a Bearer token (any role) or an account's password (its user).

Failed logins count in the same lockout as SMTP, IMAP and POP3 (the node's AuthLimiter):
a password against the account's name, a token against its public id (so guessing one
token's secret locks that token, not everyone's), each also per client address.
"""

from __future__ import annotations

import asyncio
import binascii
from base64 import b64decode
from dataclasses import dataclass
from typing import NoReturn

from reference.clock import Clock
from reference.directory import Directory
from reference.smtp.authlimit import AuthLimiter
from reference.web.problems import HttpProblem

__all__ = ["Principal", "WebAuth"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mailspec", Basic realm="mailspec"'}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: admin; domain-admin of ``domain``; user ``user``."""

    role: str
    domain: str | None = None
    user: str | None = None
    token: str | None = None  # the public id of the token it came with
    admin: str | None = None  # the platform administrator's name, after a password login

    def may_domain(self, domain: str) -> bool:
        return self.role == "admin" or (self.role == "domain-admin" and domain == self.domain)

    def domains(self) -> list[str] | None:
        """The domains an administrator manages (None: every one, the platform's)."""
        return None if self.role == "admin" else [self.domain] if self.domain else []

    def may_account(self, address: str) -> bool:
        """``address`` canonical: an admin's, its domain's administrator's, its own user's."""
        if self.role == "user":
            return address == self.user
        return self.may_domain(address.rpartition("@")[2])


class WebAuth:
    """Checks the Authorization header against the directory, behind the lockout."""

    def __init__(self, directory: Directory, limiter: AuthLimiter, clock: Clock) -> None:
        self.directory = directory
        self.limiter = limiter
        self.clock = clock

    async def principal(self, authorization: str, peer: str) -> Principal:
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return await self.by_token(credentials, peer)
        if scheme.lower() == "basic" and credentials:
            try:
                user, sep, password = b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, sep, password = "", "", ""
            if not sep or not user:
                raise HttpProblem(
                    401, "Basic credentials are base64 of user:password", headers=_CHALLENGE
                )
            return await self.by_password(user, password, peer)
        raise HttpProblem(
            401,
            "give a Bearer token (mailspec token create) or Basic credentials",
            headers=_CHALLENGE,
        )

    async def by_token(self, secret: str, peer: str) -> Principal:
        """The token's role and scope; 401 (counted) or 429 while locked."""
        token_id = self.directory.token_id(secret) or "malformed"
        name = f"token:{token_id}"
        await self._not_locked(name, peer)
        token = await asyncio.to_thread(self.directory.check_token, secret)
        if token is None:
            await self._failed(name, peer)
        return Principal(token.role, token.domain, token.user, token.id)

    async def by_password(self, user: str, password: str, peer: str) -> Principal:
        """The account's user; 401 (counted with SMTP, IMAP and POP3) or 429 while locked."""
        await self._not_locked(user, peer)
        address = await self.directory.authenticate(user, password, client=peer)
        if address is None:
            await self._failed(user, peer)
        return Principal("user", None, address)

    async def by_admin_password(self, name: str, password: str, peer: str) -> Principal:
        """A platform administrator (``mailspec admin create``); failures counted with the
        mail logins' against the name as given (never an account's: it has no ``@``), so
        guesses at it over SMTP, IMAP or POP3 lock the panel login too, and the other way."""
        await self._not_locked(name, peer)
        found = await asyncio.to_thread(self.directory.check_admin, name, password)
        if found is None:
            await self._failed(name, peer)
        return Principal("admin", admin=found)

    async def _not_locked(self, name: str, peer: str) -> None:
        locked = await self.limiter.locked(name, peer)
        if locked is not None:
            wait = max(1, int(locked.until - self.clock.now()))
            raise HttpProblem(
                429,
                f"{locked.scope} locked after failed logins; try again later",
                headers={"Retry-After": str(wait)},
            )

    async def _failed(self, name: str, peer: str) -> NoReturn:
        delay = await self.limiter.failed(name, peer, service="web")
        if delay > 0:
            await self.clock.sleep(delay)  # the slowdown, on the injected clock
        raise HttpProblem(401, "wrong credentials", headers=_CHALLENGE)
