"""Platform administrators who log into the control panel with a name and a password.

Their passwords are hashed like account passwords (scrypt, :mod:`.passwords`); a name has
no ``@``, so it never stands for a mailbox. The API keeps its tokens (``mailspec token``).
"""

from __future__ import annotations

import hashlib
import re

from reference.directory.accounts import Accounts
from reference.directory.passwords import DUMMY_HASH, hash_password, verify_password
from reference.directory.schema import DirectoryError
from reference.directory.sql import ConstraintError

__all__ = ["PanelAdmins", "admin_name"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def admin_name(name: str) -> str:
    """``name`` lower-cased, if it is a valid administrator's name (no ``@``)."""
    canonical = name.strip().lower()
    if not _NAME.match(canonical):
        raise DirectoryError(
            "an administrator's name is 1-64 of a-z, 0-9, '.', '_', '-', not %(name)r", name=name
        )
    return canonical


class PanelAdmins(Accounts):
    """The platform's administrators, in the directory database."""

    def add_admin(self, name: str, password: str, *, now: float) -> str:
        canonical = admin_name(name)
        if not password:
            raise DirectoryError("a password must not be empty")
        hashed = hash_password(password)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO panel_admins(name, password, created) VALUES (?, ?, ?)",
                    (canonical, hashed, now),
                )
            except ConstraintError:
                raise DirectoryError(
                    "administrator %(name)s exists already", name=canonical
                ) from None
        return canonical

    def set_admin_password(self, name: str, password: str) -> str:
        canonical = admin_name(name)
        if not password:
            raise DirectoryError("a password must not be empty")
        with self._lock:
            cur = self._db.execute(
                "UPDATE panel_admins SET password = ? WHERE name = ?",
                (hash_password(password), canonical),
            )
        if cur.rowcount == 0:
            raise DirectoryError("no such administrator: %(name)s", name=canonical)
        return canonical

    def remove_admin(self, name: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM panel_admins WHERE name = ?", (name.strip().lower(),)
            )
        return cur.rowcount > 0

    def admins(self) -> list[tuple[str, float]]:
        """Each administrator's name and when it was made."""
        with self._lock:
            return [
                (n, c)
                for n, c in self._db.execute("SELECT name, created FROM panel_admins ORDER BY name")
            ]

    def _admin_hash(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT password FROM panel_admins WHERE name = ?", (name.strip().lower(),)
            ).fetchone()
        return row[0] if row else None

    def check_admin(self, name: str, password: str) -> str | None:
        """The administrator's name if ``password`` is theirs (as slow for no such name)."""
        stored = self._admin_hash(name)
        ok = verify_password(password, stored or DUMMY_HASH)
        return name.strip().lower() if ok and stored is not None else None

    def admin_stamp(self, name: str) -> str | None:
        """A digest of the administrator's password hash (None: no such administrator): a
        panel session keeps it, so a new password or a removal ends the older sessions."""
        stored = self._admin_hash(name)
        return hashlib.sha256(stored.encode()).hexdigest()[:32] if stored else None
