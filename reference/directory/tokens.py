"""API tokens: who may use the admin API, in which role, stored as hashes of their secrets."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from reference.directory.accounts import Accounts
from reference.directory.schema import DirectoryError, normalize_domain

__all__ = ["ROLES", "ApiToken", "ApiTokens"]

# The platform's administrator; a domain's administrator (a reseller: only that domain);
# a user (self-service: only their own account).
ROLES = ("admin", "domain-admin", "user")

_PREFIX = "mst_"
_TOKEN = re.compile(r"^mst_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


def _digest(secret: str) -> str:
    # The secret is 256 random bits: a plain hash is enough (no password to stretch).
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """A token as stored: its public id, role and scope (never its secret)."""

    id: str
    role: str
    domain: str | None
    user: str | None
    created: float


class ApiTokens(Accounts):
    """Tokens for the admin API, in the directory database."""

    def create_token(
        self, role: str, *, now: float, domain: str | None = None, user: str | None = None
    ) -> tuple[ApiToken, str]:
        """A new token and its secret text (shown once; only its hash is kept)."""
        if role not in ROLES:
            raise DirectoryError(f"a role is one of {', '.join(ROLES)}, not {role!r}")
        if role == "domain-admin":
            if not domain:
                raise DirectoryError("a domain-admin token needs --domain")
            domain = normalize_domain(domain)
            if not self.is_local_domain(domain):
                raise DirectoryError(f"domain {domain} is not ours")
        elif domain:
            raise DirectoryError(f"--domain is for domain-admin tokens, not {role}")
        if role == "user":
            account = self.lookup(user or "")
            if account is None:
                raise DirectoryError(f"a user token needs --user with an account, not {user!r}")
            user = account.address
        elif user:
            raise DirectoryError(f"--user is for user tokens, not {role}")
        token = ApiToken(secrets.token_hex(6), role, domain, user, now)
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute(
                'INSERT INTO api_tokens(id, secret_sha256, role, domain, "user", created) '
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token.id, _digest(secret), role, domain, user, now),
            )
        return token, f"{_PREFIX}{token.id}_{secret}"

    def tokens(self) -> list[ApiToken]:
        with self._lock:
            rows = self._db.execute(
                'SELECT id, role, domain, "user", created FROM api_tokens ORDER BY created, id'
            ).fetchall()
        return [ApiToken(*row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
        return cur.rowcount > 0

    @staticmethod
    def token_id(presented: str) -> str | None:
        """The id part of a presented token (what failed attempts are counted against)."""
        m = _TOKEN.match(presented)
        return m.group(1) if m else None

    def check_token(self, presented: str) -> ApiToken | None:
        """The token ``presented`` stands for, if its secret is right and its scope still
        exists (a disabled user's tokens stop working with the account)."""
        m = _TOKEN.match(presented)
        if m is None:
            return None
        with self._lock:
            row = self._db.execute(
                'SELECT secret_sha256, role, domain, "user", created FROM api_tokens WHERE id = ?',
                (m.group(1),),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], _digest(m.group(2))):
            return None
        token = ApiToken(m.group(1), row[1], row[2], row[3], row[4])
        if token.role == "user":
            account = self.lookup(token.user or "")
            if account is None or not account.enabled:
                return None
        if token.role == "domain-admin" and not self.is_local_domain(token.domain or ""):
            return None
        return token
