"""What an operator or a user does to the platform: domains, accounts, aliases, DKIM keys,
the queue; forwarding, spam scores, Sieve, the out-of-office reply; a domain's branding.

The command line (`mailspec domain|user|alias|dkim|dns|queue …`), the admin API
(`/api/v1/…`) and the control panel all call this one layer, so a rule (what a valid
account is, what a domain must publish, that deleting mail is never a default) is written
once. Who may call what is the caller's business: the command line runs as the server's
own user, the API and the panel check roles. Refusals are :class:`ServiceError` values
naming the field at fault, never half-done; their messages are templates the panel
translates.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reference.auth.feedback import Feedback
from reference.auth.keys import KeyStore, KeyStoreError, SigningKey, txt_strings
from reference.auth.reports import DmarcStore, SentReport
from reference.clock import Clock, RealClock
from reference.config import Config
from reference.delivery import lane_of
from reference.delivery.retire import Retired, delete_domain, delete_user
from reference.directory import (
    ACCESS_ACTIONS,
    ACCESS_KINDS,
    LIST_POLICIES,
    ROLES,
    AccessRule,
    Account,
    ApiToken,
    ArchiveRule,
    ClassOfService,
    Directory,
    DirectoryError,
    MailingList,
    normalize_domain,
    split_address,
)
from reference.mailbox import MailStore
from reference.metrics import LANES
from reference.refusal import Refusal
from reference.sieve import ReplyLog, ScriptError, ScriptStore, SieveError
from reference.sieve.outofoffice import SCRIPT_NAME, OutOfOffice, current, switch_off, switch_on
from reference.spool import QueueEntry, Spool
from reference.usage import UsageRow, UsageStore, day_of, domain_totals

__all__ = [
    "LOGO_TYPES",
    "MAX_LOGO",
    "QUEUE_ID_PATTERN",
    "Admin",
    "Branding",
    "Conflict",
    "DmarcDay",
    "DnsRecord",
    "Forwarding",
    "Invalid",
    "ListInfo",
    "NotFound",
    "QueueChange",
    "ServiceError",
    "SpamThresholds",
    "Storage",
    "UsageReport",
    "Vacation",
    "canonical_address",
    "canonical_domain",
    "sieve_replies",
    "sieve_scripts",
]

QUEUE_ACTIONS = ("flush", "hold", "release", "delete")
# What Spool.new_qid makes (time in hex, then randomness): checked before an id names a file.
QUEUE_ID_PATTERN = r"^[0-9A-F]{11,24}$"
DKIM_PURPOSE = "DKIM (RFC 6376, RFC 8463): the signing keys"
# A logo is a small picture shown on every page; PNG and JPEG only (an SVG can carry script).
MAX_LOGO = 48 * 1024
LOGO_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
MAX_BRAND_NAME = 80


class ServiceError(Refusal):
    """A request the platform refuses; ``field`` names the input at fault, if one is.

    The message is a template with named values (``"no such account: %(address)s"``), so
    the panel can say it in its reader's language; ``str()`` is the English text.
    """

    def __init__(self, message: str, field: str | None = None, **values: object) -> None:
        super().__init__(message, **values)
        self.field = field

    @classmethod
    def of(cls, e: Exception, field: str | None = None) -> ServiceError:
        """The refusal ``e`` (a directory's or a store's) as this kind, naming ``field``."""
        if isinstance(e, Refusal):
            return cls(e.template, field, **e.values)
        return cls(str(e), field)


class Invalid(ServiceError):
    """The input is not acceptable (a malformed address, a domain that is not ours)."""


class NotFound(ServiceError):
    """What the request names does not exist."""


class Conflict(ServiceError):
    """It exists already."""


def canonical_address(address: str, field: str = "address") -> str:
    """'Alice@Example.TEST' -> 'alice@example.test', or :class:`Invalid` naming ``field``."""
    try:
        local, domain = split_address(address)
    except DirectoryError as e:
        raise Invalid.of(e, field) from None
    return f"{local}@{domain}"


def canonical_domain(name: str, field: str = "domain") -> str:
    try:
        return normalize_domain(name)
    except DirectoryError as e:
        raise Invalid.of(e, field) from None


def arc_key(cfg: Config) -> SigningKey:
    """The key forwarded mail is ARC-sealed with: the SRS domain's rsa-sha256 DKIM key (RFC
    8617 seals with RSA only), made at the first start."""
    keys = KeyStore(cfg.data_path / "dkim")
    return keys.generate(cfg.srs_domain, cfg.auth.selector, ("rsa-sha256",))[0]


def sieve_scripts(cfg: Config) -> ScriptStore:
    """The users' Sieve scripts under data_dir, for the node and the CLI alike."""
    return ScriptStore(
        cfg.data_path / "sieve",
        max_scripts=cfg.sieve.max_scripts,
        max_size=cfg.sieve.max_script_size,
    )


def sieve_replies(cfg: Config) -> ReplyLog:
    """Who had a vacation reply from whom, until when."""
    return ReplyLog(cfg.data_path / "sieve" / "replies.sqlite3")


def _script_error(e: ScriptError | SieveError, name: str) -> ServiceError:
    code = getattr(e, "code", "")
    if code == "NONEXISTENT":
        return NotFound.of(e, "name")
    if code in ("ACTIVE", "ALREADYEXISTS"):
        return Conflict.of(e, "name")
    return Invalid.of(e, "name" if isinstance(e, ScriptError) and not code else "script")


def _mail_choice(archive_to: str | None, remove_mail: bool, *, needed: bool) -> str | None:
    """The archive account chosen for a deleted account's mail (None: removed); deleting
    mail is never a default (issue 16: what happens to it is explicit)."""
    if archive_to is not None and remove_mail:
        raise Invalid("archive the mail or remove it, not both", "archive_to")
    if archive_to is None and not remove_mail and needed:
        raise Invalid(
            "say what happens to the mail: move it into an archive account or remove it",
            "archive_to",
        )
    return None if archive_to is None else canonical_address(archive_to, "archive_to")


def _retire_error(e: DirectoryError, field: str) -> ServiceError:
    """A refused deletion: what is missing, what is in the way, or a bad archive."""
    text = str(e)
    where = "archive_to" if "archive" in text else field
    if "no such" in text or "is not ours" in text:
        return NotFound.of(e, where)
    if text.endswith("first"):  # "... still has lists: delete them first"
        return Conflict.of(e, field)
    return Invalid.of(e, where)


def _not_ours(domain: str, field: str) -> Invalid:
    return Invalid(
        "domain %(domain)s is not ours: add it with 'mailspec domain add'", field, domain=domain
    )


@dataclass(frozen=True)
class AccountInfo:
    address: str
    domain: str
    enabled: bool
    quota_bytes: int | None  # None: the platform's default (mailbox.quota_bytes); 0: unlimited
    quota_messages: int | None
    bulk: bool
    aliases: list[str]


@dataclass(frozen=True)
class ListInfo:
    """A distribution list as an operator sees it."""

    address: str
    name: str
    policy: str  # public | members | local
    owner: str  # receives its bounces
    bounce_address: str
    list_id: str
    members: list[str]


def _refusal(e: DirectoryError, field: str) -> ServiceError:
    """The service's kind of refusal for what the directory said."""
    text = str(e)
    if text.startswith(("no such", "domain ")):
        return NotFound.of(e, field)
    if "already" in text:
        return Conflict.of(e, field)
    return Invalid.of(e, field)


@dataclass(frozen=True)
class DnsRecord:
    """One record a domain publishes, and its zone-file line."""

    name: str
    type: str
    value: str
    purpose: str

    @property
    def zone_line(self) -> str:
        owner = self.name.rstrip(".") + "."
        if self.type != "TXT":
            return f"{owner}\t3600\tIN\t{self.type}\t{self.value}"
        quoted = " ".join('"' + s.replace('"', '\\"') + '"' for s in txt_strings(self.value))
        return f"{owner}\t3600\tIN\tTXT\t{quoted}"


@dataclass(frozen=True)
class QueueChange:
    """What a queue action did: the ids it changed, those not queued, and who was told."""

    done: list[str]
    missing: list[str]
    notified: str = ""


@dataclass(frozen=True)
class Forwarding:
    """Where an account's mail is forwarded (no targets: nowhere), and whether a copy stays."""

    address: str
    targets: list[str]
    keep: bool


@dataclass(frozen=True)
class SpamThresholds:
    """A domain's or an account's spam scores: its own (None: not set) and those in force,
    with where each comes from (config, domain, user)."""

    scope: str
    own_reject: float | None
    own_junk: float | None
    reject_score: float
    junk_score: float
    reject_from: str
    junk_from: str


@dataclass(frozen=True)
class Vacation:
    """An account's out-of-office reply, and the account's own active script, which keeps
    applying beside it (None: none)."""

    settings: OutOfOffice
    beside: str | None


@dataclass(frozen=True)
class Storage:
    """What an account holds against its quota (0: unlimited)."""

    bytes: int
    messages: int
    quota_bytes: int
    quota_messages: int


@dataclass(frozen=True)
class Branding:
    """How a domain administrator's customers see the panel: a name, maybe a logo."""

    domain: str
    name: str
    logo_type: str | None = None


@dataclass(frozen=True)
class DmarcDay:
    """Messages from one sending source on one day (UTC) reported about a domain."""

    source: str
    day: str  # YYYY-MM-DD
    passed: int  # aligned SPF or DKIM
    failed: int


@dataclass(frozen=True)
class UsageReport:
    """Per account and day, and each domain's days (the sums of its accounts' and its own)."""

    accounts: list[UsageRow]
    domains: list[UsageRow]

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The report as the command line's --json and the admin API give it."""
        return {
            "accounts": [asdict(r) for r in self.accounts],
            "domains": [
                {k: v for k, v in asdict(r).items() if k != "account"} for r in self.domains
            ],
        }


class Admin:
    """The operations, over one node's directory, spool and keys."""

    def __init__(
        self,
        directory: Directory,
        cfg: Config,
        *,
        spool: Spool | None = None,
        notify: Callable[[Sequence[str]], str] | None = None,
        clock: Clock | None = None,
        usage: UsageStore | None = None,
        mail: MailStore | None = None,
        dmarc: DmarcStore | None = None,
        scripts: ScriptStore | None = None,
        replies: ReplyLog | None = None,
    ) -> None:
        self.directory = directory
        self.cfg = cfg
        self.clock = clock or RealClock()
        self._spool = spool
        # Wakes the queue runner for the messages flushed or released: in the server,
        # directly; from the command line, by a signal to the running server. Says what it did.
        self.notify = notify or (lambda qids: "")
        self.keys = KeyStore(cfg.data_path / "dkim")
        self._usage = usage
        self._mail = mail
        # The node's own stores where it has them (the command line opens its own).
        self.scripts = scripts or sieve_scripts(cfg)
        self._replies = replies
        self.brand_dir = cfg.data_path / "branding"
        self._dmarc = dmarc
        self._opened: list[DmarcStore | UsageStore] = []  # stores it opened itself

    def close(self) -> None:
        """Close the stores this object opened (not those it was given)."""
        for store in self._opened:
            store.close()
        self._opened.clear()

    # -- domains

    def domains(self) -> list[str]:
        return self.directory.domains()

    def domain(self, name: str, field: str = "domain") -> str:
        """One of our domains, by any spelling, or :class:`NotFound`."""
        domain = canonical_domain(name, field)
        if not self.directory.is_local_domain(domain):
            raise NotFound("domain %(domain)s is not ours", field, domain=domain)
        return domain

    def add_domain(self, name: str) -> str:
        domain = canonical_domain(name, "name")
        if self.directory.is_local_domain(domain):
            raise Conflict("domain %(domain)s exists already", "name", domain=domain)
        return self.directory.add_domain(domain)

    # -- accounts

    def accounts(self, domain: str | None = None) -> list[Account]:
        return self.directory.users(self.domain(domain) if domain else None)

    def account(self, address: str) -> AccountInfo:
        found = self._account(address)
        own_bytes, own_messages = self.directory.quota(found.address)
        return AccountInfo(
            found.address,
            found.domain,
            found.enabled,
            own_bytes,
            own_messages,
            self.directory.is_bulk_sender(found.address),
            [a for a, _ in self.directory.aliases(target=found.address)],
        )

    def _account(self, address: str, field: str = "address") -> Account:
        found = self.directory.lookup(canonical_address(address, field))
        if found is None:
            raise NotFound("no such account: %(address)s", field, address=address)
        return found

    def add_account(self, address: str, password: str) -> Account:
        canonical = canonical_address(address)
        if not password:
            raise Invalid("a password must not be empty", "password")
        domain = canonical.rpartition("@")[2]
        if not self.directory.is_local_domain(domain):
            raise _not_ours(domain, "address")
        if self.directory.lookup(canonical) is not None:
            raise Conflict("%(address)s exists already", "address", address=canonical)
        return self.directory.add_user(canonical, password)

    def set_password(self, address: str, password: str) -> str:
        found = self._account(address)
        if not password:
            raise Invalid("a password must not be empty", "password")
        self.directory.set_password(found.address, password)
        return found.address

    def set_quota(
        self, address: str, *, bytes: int | None = None, messages: int | None = None
    ) -> str:
        found = self._account(address)
        for name, value in (("quota_bytes", bytes), ("quota_messages", messages)):
            if value is not None and value < 0:
                raise Invalid("a quota is a number of bytes or messages, 0 or more", name)
        return self.directory.set_quota(found.address, bytes=bytes, messages=messages)

    def set_enabled(self, address: str, enabled: bool) -> str:
        return self.directory.set_enabled(self._account(address).address, enabled)

    def set_bulk_sender(self, address: str, bulk: bool) -> str:
        return self.directory.set_bulk_sender(self._account(address).address, bulk)

    def delete_account(
        self, address: str, *, archive_to: str | None = None, remove_mail: bool = False
    ) -> Retired:
        """Delete an account; its mail is moved into ``archive_to`` (an account), or removed
        (``remove_mail``): one of the two must be chosen."""
        canonical = canonical_address(address)
        archive = _mail_choice(archive_to, remove_mail, needed=True)
        try:
            return delete_user(self.directory, self.mail, canonical, archive=archive)
        except DirectoryError as e:
            raise _retire_error(e, "address") from None

    def delete_domain(
        self, name: str, *, archive_to: str | None = None, remove_mail: bool = False
    ) -> list[Retired]:
        """Delete a domain with its accounts and aliases (an alias domain: only itself); the
        accounts' mail is moved into ``archive_to`` (an account of another domain) or removed
        (``remove_mail``): one of the two must be chosen when the domain has accounts."""
        domain = canonical_domain(name)
        archive = _mail_choice(archive_to, remove_mail, needed=bool(self.directory.users(domain)))
        try:
            return delete_domain(self.directory, self.mail, domain, archive=archive)
        except DirectoryError as e:
            raise _retire_error(e, "domain") from None

    def storage(self, address: str) -> Storage:
        """What an account's mailboxes hold, against its quota."""
        account = self._account(address).address
        used = self.mail.usage(account) if self.mail.has_account(account) else None
        quota = self.mail.quota_for(account)
        return Storage(
            used.bytes if used else 0, used.messages if used else 0, quota.bytes, quota.messages
        )

    @property
    def mail(self) -> MailStore:
        if self._mail is None:  # without quotas: the node and the command line give theirs
            self._mail = MailStore(self.cfg.data_path / "mail")
        return self._mail

    # -- forwarding

    def forwarding(self, address: str) -> Forwarding:
        found = self._account(address)
        targets, keep = self.directory.forward_of(found.address)
        return Forwarding(found.address, targets, keep or not targets)  # none: all kept here

    def set_forwarding(self, address: str, targets: Sequence[str], *, keep: bool) -> Forwarding:
        """Forward the account's mail to ``targets`` (none: stop forwarding)."""
        found = self._account(address)
        for i, target in enumerate(targets):
            canonical_address(target, f"targets.{i}")
        if not targets:
            self.directory.clear_forward(found.address)
        else:
            try:
                self.directory.set_forward(found.address, list(targets), keep=keep)
            except DirectoryError as e:
                raise Invalid.of(e, "targets") from None
        return self.forwarding(found.address)

    # -- spam thresholds and sender lists

    def _spam_scope(self, scope: str) -> str:
        if "@" in scope:
            return self._account(scope).address
        return self.domain(scope)

    def spam_thresholds(self, scope: str) -> SpamThresholds:
        """A domain's or an account's thresholds (an account's before its domain's before
        the config's)."""
        key = self._spam_scope(scope)
        layers = [(key, "domain")]
        if "@" in key:
            layers = [(key.rpartition("@")[2], "domain"), (key, "user")]
        rows = self.directory.spam_settings(*(k for k, _ in layers))
        found: dict[str, tuple[float, str]] = {}
        for name, default in (
            ("reject", self.cfg.spam.reject_score),
            ("junk", self.cfg.spam.junk_score),
        ):
            value, source = float(default), "config"
            for k, label in layers:
                row = rows.get(k)
                got = None if row is None else getattr(row, f"{name}_score")
                if got is not None:
                    value, source = got, label
            found[name] = (value, source)
        own = rows.get(key)
        return SpamThresholds(
            key,
            None if own is None else own.reject_score,
            None if own is None else own.junk_score,
            found["reject"][0],
            found["junk"][0],
            found["reject"][1],
            found["junk"][1],
        )

    def set_spam_thresholds(
        self,
        scope: str,
        *,
        reject: float | None = None,
        junk: float | None = None,
        replace: bool = False,
    ) -> SpamThresholds:
        """Set scores: one not given is kept, or with ``replace`` (a form that shows both)
        inherited again; a refused change keeps what there was."""
        key = self._spam_scope(scope)
        if replace and reject is None and junk is None:
            return self.reset_spam_thresholds(key)
        try:
            self.directory.set_spam_settings(
                key, reject_score=reject, junk_score=junk, keep=not replace
            )
        except DirectoryError as e:
            text = str(e)
            raise Invalid.of(e, "junk_score" if "junk" in text else "reject_score") from None
        return self.spam_thresholds(key)

    def reset_spam_thresholds(self, scope: str) -> SpamThresholds:
        key = self._spam_scope(scope)
        self.directory.clear_spam_settings(key)
        return self.spam_thresholds(key)

    def sender_lists(self, address: str) -> list[tuple[str, str]]:
        """(allow|block, pattern) entries of an account."""
        return self.directory.sender_lists(self._account(address).address)

    def list_sender(self, address: str, kind: str, pattern: str) -> str:
        """Put ``pattern`` (``sender@domain`` or ``@domain``) on an account's allow or block
        list (off the other one)."""
        found = self._account(address)
        if kind not in ("allow", "block"):
            raise Invalid("a sender list is allow or block, not %(kind)r", "kind", kind=kind)
        try:
            return self.directory.set_sender_list(found.address, kind, pattern)
        except DirectoryError as e:
            raise Invalid.of(e, "pattern") from None

    def unlist_sender(self, address: str, pattern: str) -> str:
        found = self._account(address)
        try:
            removed = self.directory.remove_sender_list(found.address, pattern)
        except DirectoryError as e:
            raise Invalid.of(e, "pattern") from None
        if not removed:
            raise NotFound(
                "%(pattern)s is on no list of %(address)s",
                "pattern",
                pattern=pattern,
                address=found.address,
            )
        return pattern

    # -- Sieve scripts and the out-of-office reply

    def reader(self, address: str) -> str:
        """The account that reads ``address``'s mail (an alias names its account)."""
        found = self.directory.resolve(canonical_address(address))
        if found is None:
            raise NotFound("no such account: %(address)s", "address", address=address)
        return found.address

    def sieve_scripts(self, address: str) -> tuple[list[tuple[str, bool]], list[str]]:
        """(name, active) of each script, and the recent errors of the active one."""
        user = self.reader(address)
        return self.scripts.listing(user), self.scripts.errors(user)[-5:]

    def sieve_script(self, address: str, name: str) -> str:
        user = self.reader(address)
        try:
            text = self.scripts.get(user, name)
        except ScriptError as e:
            raise _script_error(e, name) from None
        if text is None:
            raise NotFound("%(user)s has no script named %(name)r", "name", user=user, name=name)
        return text

    def put_sieve_script(self, address: str, name: str, text: str, *, activate: bool) -> str:
        """Store a script (only one that compiles), and make it the active one if asked."""
        user = self.reader(address)
        try:
            self.scripts.put(user, name, text)
            if activate:
                self.scripts.activate(user, name)
        except (ScriptError, SieveError) as e:
            raise _script_error(e, name) from None
        return user

    def activate_sieve_script(self, address: str, name: str) -> str:
        """Make ``name`` the script that runs (empty: none)."""
        user = self.reader(address)
        try:
            self.scripts.activate(user, name)
        except ScriptError as e:
            raise _script_error(e, name) from None
        return user

    def delete_sieve_script(self, address: str, name: str) -> str:
        user = self.reader(address)
        try:
            self.scripts.delete(user, name)
        except ScriptError as e:
            raise _script_error(e, name) from None
        return user

    def vacation(self, address: str) -> Vacation | None:
        """The out-of-office reply in force, if one is."""
        user = self.reader(address)
        settings = current(self.scripts, user)
        if settings is None:
            return None
        active = self.scripts.active_name(user)
        return Vacation(settings, active if active and active != SCRIPT_NAME else None)

    def set_vacation(
        self,
        address: str,
        *,
        subject: str,
        text: str,
        start: str = "",
        end: str = "",
        days: int = 7,
        from_: str = "",
        addresses: Sequence[str] = (),
    ) -> Vacation:
        """Turn the out-of-office reply on: a generated vacation script (RFC 5230) kept
        beside the account's own active script, which keeps applying."""
        user = self.reader(address)
        try:
            settings = OutOfOffice(subject, text, start, end, days, from_, tuple(addresses))
        except ValueError as e:  # "--end: …": the form's field comes first
            field = str(e).removeprefix("--").split(":")[0].split(" ")[0]
            raise Invalid.of(e, field) from None
        replies = self._replies or sieve_replies(self.cfg)
        try:
            beside = switch_on(self.scripts, replies, user, settings)
        except (ScriptError, SieveError) as e:
            raise Invalid.of(e, "text") from None
        finally:
            if replies is not self._replies:  # the one it opened itself
                replies.close()
        return Vacation(settings, beside)

    def clear_vacation(self, address: str) -> Vacation | None:
        """Turn it off; what was cleared (None: no reply was set)."""
        user = self.reader(address)
        settings = current(self.scripts, user)
        if settings is None or switch_off(self.scripts, user) is None:
            return None
        active = self.scripts.active_name(user)
        return Vacation(settings, active or None)

    # -- aliases

    def aliases(self, domain: str | None = None) -> list[tuple[str, str]]:
        return self.directory.aliases(self.domain(domain) if domain else None)

    def add_alias(self, alias: str, *targets: str) -> tuple[str, list[str]]:
        """Deliver ``alias`` (an address, or ``@domain`` for its catch-all) to each target
        too: an account or alias here, or an address elsewhere (forwarded)."""
        try:
            return self.directory.add_alias(alias, *targets)
        except DirectoryError as e:
            text = str(e)
            if text.startswith("no such account"):
                raise NotFound.of(e, "targets") from None
            if "already" in text:
                raise Conflict.of(e, "alias") from None
            raise Invalid.of(e, "targets" if "target" in text else "alias") from None

    def remove_alias(self, alias: str, target: str | None = None) -> str:
        """Remove an alias, or only one of its targets."""
        if not self.directory.remove_alias(alias, target):
            what = f"{alias} -> {target}" if target else alias
            raise NotFound("no such alias: %(alias)s", "alias", alias=what)
        return alias

    # -- access lists

    def _access_scope(self, domain: str | None) -> str:
        """ "" for the platform's rules, else one of our domains."""
        return self.domain(domain) if domain else ""

    def access_rules(self, domain: str | None = None) -> list[AccessRule]:
        """The platform's and every domain's rules, or one domain's (``domain``)."""
        return self.directory.access_rules(self._access_scope(domain) if domain else None)

    def add_access(
        self, kind: str, pattern: str, action: str, *, domain: str | None = None, text: str = ""
    ) -> AccessRule:
        """A rule (replacing one with the same domain, kind and pattern)."""
        if kind not in ACCESS_KINDS:
            raise Invalid("an access rule is by %(kinds)s", "kind", kinds=", ".join(ACCESS_KINDS))
        if action not in ACCESS_ACTIONS:
            raise Invalid(
                "an access rule's action is %(actions)s",
                "action",
                actions=", ".join(ACCESS_ACTIONS),
            )
        scope = self._access_scope(domain)
        try:
            return self.directory.add_access(scope, kind, pattern, action, text)
        except DirectoryError as e:
            field = "action" if "restrict" in str(e) else "text" if "text" in str(e) else "pattern"
            raise Invalid.of(e, field) from None

    def remove_access(self, kind: str, pattern: str, *, domain: str | None = None) -> str:
        scope = self._access_scope(domain)
        try:
            gone = self.directory.remove_access(scope, kind, pattern)
        except DirectoryError as e:
            raise Invalid.of(e, "pattern") from None
        if not gone:
            raise NotFound(
                "no %(kind)s rule for %(pattern)s in %(scope)s",
                "pattern",
                kind=kind,
                pattern=pattern,
                scope=domain or "the global list",
            )
        return pattern

    # -- classes of service

    @staticmethod
    def _cos_error(e: DirectoryError, field: str) -> ServiceError:
        text = str(e)
        if text.startswith("no such"):
            return NotFound.of(e, "address" if "account" in text else field)
        if "already" in text or "is assigned to" in text:
            return Conflict.of(e, field)
        if text.startswith("domain") and "not ours" in text:
            return NotFound.of(e, "address")
        # A setting's own name leads its complaint ("quota_bytes: ...").
        head = text.split(":", 1)[0]
        return Invalid.of(e, head if head.isidentifier() else field)

    def classes_of_service(self) -> list[ClassOfService]:
        return self.directory.classes_of_service()

    def class_of_service(self, name: str) -> ClassOfService:
        try:
            return self.directory.cos(name)
        except DirectoryError as e:
            raise self._cos_error(e, "name") from None

    def create_cos(self, name: str, **settings: object) -> ClassOfService:
        try:
            return self.directory.create_cos(name, **settings)
        except DirectoryError as e:
            raise self._cos_error(e, "name") from None

    def set_cos(self, name: str, **settings: object) -> ClassOfService:
        try:
            return self.directory.set_cos(name, **settings)
        except DirectoryError as e:
            raise self._cos_error(e, "name") from None

    def delete_cos(self, name: str) -> str:
        try:
            return self.directory.delete_cos(name)
        except DirectoryError as e:
            raise self._cos_error(e, "name") from None

    def assign_cos(self, target: str, name: str | None) -> str:
        """Give an account (an address) or a domain a class; None takes it away."""
        try:
            return self.directory.assign_cos(target, name)
        except DirectoryError as e:
            raise self._cos_error(e, "cos") from None

    def cos_assignments(self) -> list[tuple[str, str]]:
        return self.directory.cos_assignments()

    def effective_cos(self, address: str) -> tuple[ClassOfService | None, str]:
        """The class that applies to an account, and where it comes from."""
        return self.directory.effective_cos(self._account(address).address)

    # -- distribution lists

    def _list_info(self, found: MailingList) -> ListInfo:
        return ListInfo(
            found.address,
            found.name,
            found.policy,
            found.owner,
            found.bounce_address,
            found.list_id,
            self.directory.members(found.address),
        )

    def mailing_lists(self, domain: str | None = None) -> list[ListInfo]:
        chosen = self.domain(domain) if domain else None
        return [self._list_info(m) for m in self.directory.mailing_lists(chosen)]

    def mailing_list(self, address: str) -> ListInfo:
        found = self.directory.mailing_list(canonical_address(address))
        if found is None:
            raise NotFound("no such list: %(address)s", "address", address=address)
        return self._list_info(found)

    def create_list(
        self, address: str, *, owner: str, name: str = "", policy: str = "public"
    ) -> ListInfo:
        """A list at ``address`` (one of our domains); ``owner`` (an account) gets its
        bounces; ``policy`` says who may post: public, members or local."""
        canonical = canonical_address(address)
        if policy not in LIST_POLICIES:
            raise Invalid(
                "a list policy is one of %(policies)s", "policy", policies=", ".join(LIST_POLICIES)
            )
        self._account(owner, "owner")
        try:
            made = self.directory.create_list(canonical, owner=owner, name=name, policy=policy)
        except DirectoryError as e:
            raise _refusal(e, "address") from None
        return self._list_info(made)

    def delete_list(self, address: str) -> str:
        if not self.directory.delete_list(canonical_address(address)):
            raise NotFound("no such list: %(address)s", "address", address=address)
        return address

    def set_list_policy(self, address: str, policy: str) -> ListInfo:
        self.mailing_list(address)
        try:
            return self._list_info(self.directory.set_list_policy(address, policy))
        except DirectoryError as e:
            raise _refusal(e, "policy") from None

    def add_list_members(self, address: str, members: Sequence[str]) -> ListInfo:
        """Members: accounts, aliases or lists here, or addresses elsewhere."""
        self.mailing_list(address)
        for i, member in enumerate(members):
            canonical_address(member, f"members.{i}")
        try:
            self.directory.add_members(address, *members)
        except DirectoryError as e:
            raise _refusal(e, "members") from None
        return self.mailing_list(address)

    def remove_list_member(self, address: str, member: str) -> ListInfo:
        self.mailing_list(address)
        if not self.directory.remove_member(address, canonical_address(member, "member")):
            raise NotFound(
                "%(member)s is not a member of %(list)s", "member", member=member, list=address
            )
        return self.mailing_list(address)

    def unsubscribe(self, address: str, member: str, token: str) -> str:
        """A member's one-click unsubscribe (RFC 8058), proven by the token in their copy."""
        found = self.directory.mailing_list(canonical_address(address, "list"))
        who = canonical_address(member, "member")
        if found is None or not hmac.compare_digest(found.unsubscribe_token(who), token):
            raise Invalid("this unsubscribe link is not valid", "token")
        self.directory.remove_member(found.address, who)  # again: nothing to do, and fine
        return found.address

    # -- archive-all accounts

    def archive_rules(self) -> list[ArchiveRule]:
        return self.directory.archive_rules()

    def set_archive(self, scope: str, archive: str) -> ArchiveRule:
        """Copy every message to and from ``scope`` (an account, or a domain) into the
        account ``archive``, which becomes read-only for its user."""
        if "@" in scope.strip().lstrip("@"):
            self._account(scope, "scope")
        else:
            self.domain(scope.strip().lstrip("@"), "scope")
        self._account(archive, "archive")
        try:
            return self.directory.set_archive(scope, archive)
        except DirectoryError as e:
            raise _refusal(e, "archive") from None

    def clear_archive(self, scope: str) -> str:
        if not self.directory.clear_archive(scope):
            raise NotFound("no archive rule for %(scope)s", "scope", scope=scope)
        return scope

    # -- DKIM keys and DNS records

    def dkim_keys(
        self,
        domain: str,
        *,
        selector: str | None = None,
        algorithms: Sequence[str] | None = None,
        make: bool = True,
        replace: bool = False,
    ) -> tuple[list[SigningKey], bool]:
        """The domain's signing keys, made where missing (``make``); whether any were made."""
        sel = selector or self.cfg.auth.selector
        algs = tuple(algorithms or self.cfg.auth.sign_algorithms)
        try:
            have = self.keys.load(domain, sel, algs)
            if (len(have) == len(algs) and not replace) or not make:
                return have, False
            return self.keys.generate(domain, sel, algs, replace=replace), True
        except KeyStoreError as e:
            raise Invalid.of(e, "selector" if selector else "domain") from None

    def dkim_records(self, keys: Sequence[SigningKey]) -> list[DnsRecord]:
        return [DnsRecord(k.record_name, "TXT", k.public_record(), DKIM_PURPOSE) for k in keys]

    def dns_records(self, domain: str, *, make: bool = True) -> list[DnsRecord]:
        """Every record the domain needs for what the platform does (keys made if missing,
        with ``make``; without, only the keys that exist are listed).

        Only records for what the platform does: no MTA-STS policy is served and no TLS-RPT
        report is read yet, and publishing either would promise receivers what nobody keeps.
        """
        keys, _ = self.dkim_keys(domain, make=make)
        domain = canonical_domain(domain)
        host = self.cfg.server.hostname
        sources = " ".join(
            f"{'ip6' if ':' in a else 'ip4'}:{a}" for a in self.cfg.relay.source_addresses
        )
        spf = " ".join(x for x in ("v=spf1 mx", sources, "-all") if x)
        dmarc = f"v=DMARC1; p=reject; rua=mailto:postmaster@{domain}"
        srs_spf = " ".join(x for x in ("v=spf1 a", sources, "-all") if x)
        sealing = arc_key(self.cfg)
        return [
            DnsRecord(domain, "MX", f"10 {host}.", f"{domain}: mail for it goes to {host}"),
            DnsRecord(domain, "TXT", spf, "SPF (RFC 7208): who may send as the domain"),
            *self.dkim_records(keys),
            DnsRecord(
                f"_dmarc.{domain}",
                "TXT",
                dmarc,
                "DMARC (RFC 7489): what receivers do with unauthenticated mail",
            ),
            DnsRecord(
                self.cfg.srs_domain,
                "TXT",
                srs_spf,
                "SPF of the SRS domain: forwarded mail leaves with a return path there "
                "(srs.domain)",
            ),
            DnsRecord(
                sealing.record_name,
                "TXT",
                sealing.public_record(),
                "ARC (RFC 8617): the key forwarded mail is sealed with",
            ),
        ]

    # -- API tokens

    def create_token(
        self, role: str, *, domain: str | None = None, user: str | None = None
    ) -> tuple[ApiToken, str]:
        """A new token for the admin API and its text (shown once, kept only hashed)."""
        if role not in ROLES:
            raise Invalid(
                "a role is one of %(roles)s, not %(role)r",
                "role",
                roles=", ".join(ROLES),
                role=role,
            )
        if role == "domain-admin":
            self.domain(domain or "", "domain")  # Invalid or NotFound, naming it
        if role == "user":
            self._account(user or "", "user")
        try:
            return self.directory.create_token(role, now=self.clock.now(), domain=domain, user=user)
        except DirectoryError as e:
            raise Invalid.of(e, "role") from None

    def tokens(self) -> list[ApiToken]:
        return self.directory.tokens()

    def revoke_token(self, token_id: str) -> str:
        if not self.directory.revoke_token(token_id):
            raise NotFound("no such token: %(id)s", "id", id=token_id)
        return token_id

    # -- platform administrators (the panel's password logins)

    def create_admin(self, name: str, password: str) -> str:
        try:
            return self.directory.add_admin(name, password, now=self.clock.now())
        except DirectoryError as e:
            raise _refusal(e, "password" if "password" in str(e) else "name") from None

    def set_admin_password(self, name: str, password: str) -> str:
        try:
            return self.directory.set_admin_password(name, password)
        except DirectoryError as e:
            raise _refusal(e, "password" if "password" in str(e) else "name") from None

    def admins(self) -> list[tuple[str, float]]:
        return self.directory.admins()

    def delete_admin(self, name: str) -> str:
        if not self.directory.remove_admin(name):
            raise NotFound("no such administrator: %(name)s", "name", name=name)
        return name.strip().lower()

    # -- DMARC aggregate reports

    def _dmarc_read(self) -> DmarcStore | None:
        if self._dmarc is None:  # the command line's: the server's store, if it made one
            path = self.cfg.data_path / "dmarc.sqlite3"
            if not path.exists():
                return None
            self._dmarc = DmarcStore(path)
            self._opened.append(self._dmarc)
        return self._dmarc

    def dmarc_reports(self, domain: str) -> list[Feedback]:
        """Aggregate reports received about a domain (one that was ours, too)."""
        name = canonical_domain(domain)
        store = self._dmarc_read()
        return store.received(name) if store is not None else []

    def dmarc_days(self, domain: str) -> list[DmarcDay]:
        """Pass and fail per sending source and day, from the reports received about it."""
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for fb in self.dmarc_reports(domain):
            day = time.strftime("%Y-%m-%d", time.gmtime(fb.begin))
            for row in fb.rows:
                counts[(row.source_ip, day)][0 if row.aligned else 1] += row.count
        return [DmarcDay(s, d, p, f) for (s, d), (p, f) in sorted(counts.items())]

    def dmarc_pending(self) -> list[tuple[str, int]]:
        """Evaluations recorded and not yet reported (sent daily to each rua), per domain."""
        store = self._dmarc_read()
        return store.pending() if store is not None else []

    # -- branding (a domain administrator's name and logo, shown to the domain's users)

    def _brand_paths(self, domain: str) -> tuple[Path, Path]:
        d = canonical_domain(domain)
        return self.brand_dir / f"{d}.json", self.brand_dir / f"{d}.logo"

    def branding(self, domain: str) -> Branding | None:
        meta, _ = self._brand_paths(domain)
        try:
            data: dict[str, Any] = json.loads(meta.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return Branding(canonical_domain(domain), str(data["name"]), data.get("logo_type"))

    def logo(self, domain: str) -> tuple[bytes, str] | None:
        brand = self.branding(domain)
        if brand is None or brand.logo_type is None:
            return None
        return self._brand_paths(domain)[1].read_bytes(), brand.logo_type

    def set_branding(self, domain: str, name: str, logo: bytes | None = None) -> Branding:
        """Name the domain's panel (and show ``logo``, a PNG or JPEG; None keeps the one
        there is, b"" removes it)."""
        d = self.domain(domain)
        name = " ".join(name.split())
        if not name or len(name) > MAX_BRAND_NAME:
            raise Invalid("a name is 1 to %(most)d characters", "name", most=MAX_BRAND_NAME)
        meta, picture = self._brand_paths(d)
        logo_type = (self.branding(d) or Branding(d, name)).logo_type
        if logo:
            if len(logo) > MAX_LOGO:
                raise Invalid("a logo is at most %(kib)d KiB", "logo", kib=MAX_LOGO // 1024)
            logo_type = next((t for magic, t in LOGO_TYPES.items() if logo.startswith(magic)), None)
            if logo_type is None:
                raise Invalid("a logo is a PNG or JPEG picture", "logo")
        self.brand_dir.mkdir(parents=True, exist_ok=True)
        if logo:
            _write(picture, logo)
        elif logo == b"":
            picture.unlink(missing_ok=True)
            logo_type = None
        _write(meta, json.dumps({"name": name, "logo_type": logo_type}).encode())
        return Branding(d, name, logo_type)

    def dmarc_sent(self, domains: Sequence[str] | None = None) -> list[SentReport]:
        """Aggregate reports we built, newest first: all, or those about ``domains`` (and
        their subdomains' policies), with what became of each rua= destination."""
        names = None if domains is None else [canonical_domain(d) for d in domains]
        store = self._dmarc_read()
        return store.sent(names) if store is not None else []

    def dmarc_sent_xml(self, report_id: str) -> tuple[str, bytes]:
        """(policy domain, XML document) of a report we built, or :class:`NotFound`."""
        store = self._dmarc_read()
        found = store.sent_xml(report_id) if store is not None else None
        if found is None:
            raise NotFound("no report %(report_id)s was sent", "report_id", report_id=report_id)
        return found

    # -- usage

    def usage(
        self, *, domain: str | None = None, account: str | None = None, since: str = ""
    ) -> UsageReport:
        """Usage per day of every account (of one domain, or one account) from ``since``
        (YYYY-MM-DD) on, and the domains' totals; today's row of each account in scope
        says what its mailboxes hold now."""
        if since and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", since):
            raise Invalid("a day is YYYY-MM-DD, not %(day)r", "since", day=since)
        scope: list[str] | None = None  # the domains read (None: all)
        if account is not None:
            accounts = [self._account(account, "account")]
            scope = [accounts[0].domain]
        else:
            accounts = self.accounts(domain)
            scope = [self.domain(domain)] if domain else None
        if self._usage is None:  # the command line's: the server's store, read from outside
            self._usage = UsageStore(self.cfg.data_path / "usage.sqlite3", self.clock)
            self._opened.append(self._usage)
        rows = self._usage.rows(
            domains=scope,
            account=accounts[0].address if account is not None else None,
            since=since,
        )
        today = day_of(self.clock.now())
        have = {(r.day, r.account): r for r in rows}
        for a in accounts:
            row = have.get((today, a.address))
            if row is None:
                row = UsageRow(today, a.domain, a.address)
                rows.append(row)
            row.storage_bytes = self.mail.usage(a.address).bytes
        rows.sort(key=lambda r: (r.day, r.domain, r.account))
        return UsageReport(rows, [] if account is not None else domain_totals(rows))

    # -- the queue

    @property
    def spool(self) -> Spool:
        if self._spool is None:  # the command line's: the server's spool, read from outside
            self._spool = Spool(self.cfg.spool_path, self.clock)
        return self._spool

    def queue(self, domain: str | None = None) -> list[QueueEntry]:
        """Every queued message, or those of one domain (see :meth:`queue_domains`)."""
        entries = self.spool.entries()
        if domain is None:
            return entries
        name = canonical_domain(domain)
        return [e for e in entries if name in self.queue_domains(e)]

    def queue_depth(self, domain: str | None = None) -> list[tuple[str, int, float | None]]:
        """(lane, messages, age of the oldest in seconds) for every lane, of the whole queue
        or of one domain's messages (None: the lane is empty)."""
        now = self.clock.now()
        oldest: dict[str, float] = {}
        counts = dict.fromkeys(LANES, 0)
        for entry in self.queue(domain):
            lane = lane_of(entry)
            counts[lane] = counts.get(lane, 0) + 1
            oldest[lane] = min(oldest.get(lane, entry.created), entry.created)
        return [
            (lane, n, now - oldest[lane] if lane in oldest else None) for lane, n in counts.items()
        ]

    @staticmethod
    def queue_domains(entry: QueueEntry) -> set[str]:
        """The domains whose administrators see and handle a queued message: the domain of
        the account that sent it, the one domain every recipient is in (mail for another
        customer too stays the platform's), and the domain a DMARC report is about. The
        envelope sender alone gives nothing: anyone can write any domain there."""
        owners = {entry.user.rpartition("@")[2].lower()} if entry.user else set()
        rcpt_domains = {r.address.rpartition("@")[2].lower() for r in entry.recipients}
        if len(rcpt_domains) == 1 and entry.kind != "forward":
            owners |= rcpt_domains
        if entry.kind == "dmarc-report" and entry.about:
            owners.add(entry.about.lower())
        return owners

    @staticmethod
    def _qid(qid: str) -> str:
        if not re.match(QUEUE_ID_PATTERN, qid):
            raise Invalid("not a queue id: %(qid)r", "qid", qid=qid)
        return qid

    def queued(self, qid: str) -> tuple[QueueEntry, str]:
        """One queued message's envelope and header section."""
        entry = self.spool.load(self._qid(qid))
        if entry is None:
            raise NotFound("no queued message %(qid)s", "qid", qid=qid)
        try:
            head = self.spool.read_message(qid).split(b"\r\n\r\n", 1)[0]
        except FileNotFoundError:
            raise NotFound("no queued message %(qid)s", "qid", qid=qid) from None
        return entry, head.decode("utf-8", "replace")

    def change_queue(
        self, action: str, qids: Sequence[str] = (), *, domain: str | None = None
    ) -> QueueChange:
        """Flush, hold, release or delete queued messages (a flush of none: all of them).
        With ``domain``, only that domain's messages: another's is not found (never told
        apart from one that is not queued), and nothing is changed."""
        if action not in QUEUE_ACTIONS:
            raise Invalid(
                "an action is one of %(actions)s", "action", actions=", ".join(QUEUE_ACTIONS)
            )
        spool = self.spool
        chosen = [self._qid(q) for q in qids]
        if domain is not None:
            theirs = {e.qid for e in self.queue(domain)}
            for qid in chosen:
                if qid not in theirs:
                    raise NotFound("no queued message %(qid)s", "qid", qid=qid)
            if not chosen and action == "flush":
                chosen = sorted(theirs)
        elif not chosen and action == "flush":
            chosen = [e.qid for e in spool.entries()]
        missing = [q for q in chosen if not getattr(spool, action)(q)]
        done = [q for q in chosen if q not in missing]
        notified = self.notify(done) if done and action in ("flush", "release") else ""
        return QueueChange(done, missing, notified)

    @staticmethod
    def lane(entry: QueueEntry) -> str:
        return lane_of(entry)


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole: a reader sees the old file or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
