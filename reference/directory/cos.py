"""Classes of service: named bundles of limits and permissions (storage and message quota,
rate limits, largest message, forwarding elsewhere, lists, external recipients) assigned
to domains and accounts. The account's class applies, else its domain's, else the class
named "default" if there is one; a limit the class leaves unset is the platform's."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from reference.directory.accounts import Accounts
from reference.directory.schema import DirectoryError, normalize_domain, split_address
from reference.values import Limit, Limits, parse_limit

__all__ = ["DEFAULT_COS", "ClassOfService", "ClassesOfService"]

DEFAULT_COS = "default"  # the class of every account whose account and domain have none
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class ClassOfService:
    """One bundle; None: the platform's setting (config) applies."""

    name: str
    quota_bytes: int | None = None  # 0: unlimited
    quota_messages: int | None = None
    rate_recipients: str | None = None  # COUNT/DURATION, e.g. "100/1h"; "none": unlimited
    rate_messages: str | None = None
    rate_bytes: str | None = None
    max_message_size: int | None = None  # bytes
    forward_remote: bool = True  # may forward (and alias) to addresses elsewhere
    lists: bool = True  # may run distribution lists
    external: bool = True  # may send to recipients outside our domains

    def rate_limits(self, platform: Limits) -> Limits:
        """The submission rate limits: the class's where it sets them, else ``platform``'s."""

        def pick(own: str | None, theirs: Limit | None) -> Limit | None:
            return theirs if own is None else parse_limit(own)

        return Limits(
            pick(self.rate_recipients, platform.recipients),
            pick(self.rate_messages, platform.messages),
            pick(self.rate_bytes, platform.bytes),
        )


SETTINGS = tuple(f.name for f in fields(ClassOfService) if f.name != "name")
_FLAGS = ("forward_remote", "lists", "external")


def _checked(cos: ClassOfService) -> ClassOfService:
    for name in ("quota_bytes", "quota_messages", "max_message_size"):
        value = getattr(cos, name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise DirectoryError(f"{name}: a number, 0 or more")
    for name in ("rate_recipients", "rate_messages", "rate_bytes"):
        value = getattr(cos, name)
        if value is not None:
            try:
                parse_limit(value)
            except ValueError as e:
                raise DirectoryError(f"{name}: {e}") from None
    return cos


class ClassesOfService(Accounts):
    """The classes and their assignments, in the directory's database."""

    @staticmethod
    def _cos_name(name: str) -> str:
        key = name.strip().lower()
        if not _NAME.match(key):
            raise DirectoryError(f"not a class name: {name!r} (letters, digits, - and _)")
        return key

    def _cos_row(self, name: str) -> ClassOfService | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT name, {', '.join(SETTINGS)} FROM classes_of_service WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        values = dict(zip(("name", *SETTINGS), row, strict=True))
        for flag in _FLAGS:
            values[flag] = bool(values[flag])
        return ClassOfService(**values)

    def cos(self, name: str) -> ClassOfService:
        found = self._cos_row(self._cos_name(name))
        if found is None:
            raise DirectoryError(f"no such class of service: {name}")
        return found

    def classes_of_service(self) -> list[ClassOfService]:
        with self._lock:
            names = [str(r[0]) for r in self._db.execute("SELECT name FROM classes_of_service")]
        return [c for n in sorted(names) if (c := self._cos_row(n)) is not None]

    def create_cos(self, name: str, **settings: object) -> ClassOfService:
        key = self._cos_name(name)
        if self._cos_row(key) is not None:
            raise DirectoryError(f"class of service {key} exists already")
        return self._store_cos(_checked(replace(ClassOfService(key), **settings)))  # type: ignore[arg-type]

    def set_cos(self, name: str, **settings: object) -> ClassOfService:
        """Change some settings of a class (None: back to the platform's)."""
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise DirectoryError(f"no such setting: {', '.join(sorted(unknown))}")
        return self._store_cos(_checked(replace(self.cos(name), **settings)))  # type: ignore[arg-type]

    def _store_cos(self, cos: ClassOfService) -> ClassOfService:
        values = [getattr(cos, s) for s in SETTINGS]
        marks = ", ".join("?" * (len(SETTINGS) + 1))
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO classes_of_service(name, {', '.join(SETTINGS)}) "
                f"VALUES ({marks})",
                (cos.name, *(int(v) if isinstance(v, bool) else v for v in values)),
            )
        return cos

    def delete_cos(self, name: str) -> str:
        key = self.cos(name).name
        with self.transaction() as db:
            used = db.execute(
                "SELECT scope FROM cos_assignments WHERE cos = ? ORDER BY scope", (key,)
            ).fetchall()
            if used:
                who = ", ".join(str(r[0]) for r in used)
                raise DirectoryError(f"class {key} is assigned to {who}: assign another first")
            db.execute("DELETE FROM classes_of_service WHERE name = ?", (key,))
        return key

    def _cos_scope(self, scope: str) -> str:
        """An account's address or one of our domains."""
        if "@" in scope:
            local, domain = split_address(scope)
            address = f"{local}@{domain}"
            if self.lookup(address) is None:
                raise DirectoryError(f"no such account: {address}")
            return address
        return self.own_domain(scope)

    def assign_cos(self, scope: str, name: str | None) -> str:
        """Give an account or a domain a class (None: take it away)."""
        key = self._cos_scope(scope)
        with self._lock:
            if name is None:
                self._db.execute("DELETE FROM cos_assignments WHERE scope = ?", (key,))
                return key
        cos = self.cos(name).name
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cos_assignments(scope, cos) VALUES (?, ?)", (key, cos)
            )
        return key

    def cos_assignments(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT scope, cos FROM cos_assignments ORDER BY scope")
            return [(str(s), str(c)) for s, c in rows]

    def effective_cos(self, address: str) -> tuple[ClassOfService | None, str]:
        """The class that applies to an account, and where it comes from ("account",
        "domain", "default"; None and "platform" when no class applies)."""
        account = address.strip().lower()
        domain = normalize_domain(account.rpartition("@")[2]) if "@" in account else ""
        with self._lock:
            rows = dict(
                self._db.execute(
                    "SELECT scope, cos FROM cos_assignments WHERE scope IN (?, ?)",
                    (account, domain),
                ).fetchall()
            )
        for scope, source in ((account, "account"), (domain, "domain")):
            if scope in rows:
                return self._cos_row(str(rows[scope])), source
        default = self._cos_row(DEFAULT_COS)
        return (default, "default") if default is not None else (None, "platform")
