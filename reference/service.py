"""What an operator does to the platform: domains, accounts, aliases, DKIM keys, the queue.

The command line (`mailspec domain|user|alias|dkim|dns|queue …`) and the admin API
(`/api/v1/…`) both call this one layer, so a rule (what a valid account is, what a domain
must publish, what flushing the queue does) is written once. Who may call what is the
caller's business: the command line runs as the server's own user, the API checks roles.
Refusals are :class:`ServiceError` values naming the field at fault, never half-done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reference.auth.keys import KeyStore, KeyStoreError, SigningKey, txt_strings
from reference.clock import Clock, RealClock
from reference.config import Config
from reference.delivery import lane_of
from reference.directory import (
    ACCESS_ACTIONS,
    ACCESS_KINDS,
    ROLES,
    AccessRule,
    Account,
    ApiToken,
    ClassOfService,
    Directory,
    DirectoryError,
    normalize_domain,
    split_address,
)
from reference.spool import QueueEntry, Spool

__all__ = [
    "QUEUE_ID_PATTERN",
    "Admin",
    "Conflict",
    "DnsRecord",
    "Invalid",
    "NotFound",
    "QueueChange",
    "ServiceError",
    "canonical_address",
    "canonical_domain",
]

QUEUE_ACTIONS = ("flush", "hold", "release", "delete")
# What Spool.new_qid makes (time in hex, then randomness): checked before an id names a file.
QUEUE_ID_PATTERN = r"^[0-9A-F]{11,24}$"
DKIM_PURPOSE = "DKIM (RFC 6376, RFC 8463): the signing keys"


class ServiceError(ValueError):
    """A request the platform refuses; ``field`` names the input at fault, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
        raise Invalid(str(e), field) from None
    return f"{local}@{domain}"


def canonical_domain(name: str, field: str = "domain") -> str:
    try:
        return normalize_domain(name)
    except DirectoryError as e:
        raise Invalid(str(e), field) from None


def arc_key(cfg: Config) -> SigningKey:
    """The key forwarded mail is ARC-sealed with: the SRS domain's rsa-sha256 DKIM key (RFC
    8617 seals with RSA only), made at the first start."""
    keys = KeyStore(cfg.data_path / "dkim")
    return keys.generate(cfg.srs_domain, cfg.auth.selector, ("rsa-sha256",))[0]


def _not_ours(domain: str, field: str) -> Invalid:
    return Invalid(f"domain {domain} is not ours: add it with 'mailspec domain add'", field)


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
    ) -> None:
        self.directory = directory
        self.cfg = cfg
        self.clock = clock or RealClock()
        self._spool = spool
        # Wakes the queue runner for the messages flushed or released: in the server,
        # directly; from the command line, by a signal to the running server. Says what it did.
        self.notify = notify or (lambda qids: "")
        self.keys = KeyStore(cfg.data_path / "dkim")

    # -- domains

    def domains(self) -> list[str]:
        return self.directory.domains()

    def domain(self, name: str, field: str = "domain") -> str:
        """One of our domains, by any spelling, or :class:`NotFound`."""
        domain = canonical_domain(name, field)
        if not self.directory.is_local_domain(domain):
            raise NotFound(f"domain {domain} is not ours", field)
        return domain

    def add_domain(self, name: str) -> str:
        domain = canonical_domain(name, "name")
        if self.directory.is_local_domain(domain):
            raise Conflict(f"domain {domain} exists already", "name")
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
            raise NotFound(f"no such account: {address}", field)
        return found

    def add_account(self, address: str, password: str) -> Account:
        canonical = canonical_address(address)
        if not password:
            raise Invalid("a password must not be empty", "password")
        domain = canonical.rpartition("@")[2]
        if not self.directory.is_local_domain(domain):
            raise _not_ours(domain, "address")
        if self.directory.lookup(canonical) is not None:
            raise Conflict(f"{canonical} exists already", "address")
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
                raise NotFound(text, "targets") from None
            if "already" in text:
                raise Conflict(text, "alias") from None
            raise Invalid(text, "targets" if "target" in text else "alias") from None

    def remove_alias(self, alias: str, target: str | None = None) -> str:
        """Remove an alias, or only one of its targets."""
        if not self.directory.remove_alias(alias, target):
            what = f"{alias} -> {target}" if target else alias
            raise NotFound(f"no such alias: {what}", "alias")
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
            raise Invalid(f"an access rule is by {', '.join(ACCESS_KINDS)}", "kind")
        if action not in ACCESS_ACTIONS:
            raise Invalid(f"an access rule's action is {', '.join(ACCESS_ACTIONS)}", "action")
        scope = self._access_scope(domain)
        try:
            return self.directory.add_access(scope, kind, pattern, action, text)
        except DirectoryError as e:
            field = "action" if "restrict" in str(e) else "text" if "text" in str(e) else "pattern"
            raise Invalid(str(e), field) from None

    def remove_access(self, kind: str, pattern: str, *, domain: str | None = None) -> str:
        scope = self._access_scope(domain)
        try:
            gone = self.directory.remove_access(scope, kind, pattern)
        except DirectoryError as e:
            raise Invalid(str(e), "pattern") from None
        if not gone:
            raise NotFound(
                f"no {kind} rule for {pattern} in {domain or 'the global list'}", "pattern"
            )
        return pattern

    # -- classes of service

    @staticmethod
    def _cos_error(e: DirectoryError, field: str) -> ServiceError:
        text = str(e)
        if text.startswith("no such"):
            return NotFound(text, "address" if "account" in text else field)
        if "already" in text or "is assigned to" in text:
            return Conflict(text, field)
        if text.startswith("domain") and "not ours" in text:
            return NotFound(text, "address")
        # A setting's own name leads its complaint ("quota_bytes: ...").
        head = text.split(":", 1)[0]
        return Invalid(text, head if head.isidentifier() else field)

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
            raise Invalid(str(e), "selector" if selector else "domain") from None

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
            raise Invalid(f"a role is one of {', '.join(ROLES)}, not {role!r}", "role")
        if role == "domain-admin":
            self.domain(domain or "", "domain")  # Invalid or NotFound, naming it
        if role == "user":
            self._account(user or "", "user")
        try:
            return self.directory.create_token(role, now=self.clock.now(), domain=domain, user=user)
        except DirectoryError as e:
            raise Invalid(str(e), "role") from None

    def tokens(self) -> list[ApiToken]:
        return self.directory.tokens()

    def revoke_token(self, token_id: str) -> str:
        if not self.directory.revoke_token(token_id):
            raise NotFound(f"no such token: {token_id}", "id")
        return token_id

    # -- the queue

    @property
    def spool(self) -> Spool:
        if self._spool is None:  # the command line's: the server's spool, read from outside
            self._spool = Spool(self.cfg.spool_path, self.clock)
        return self._spool

    def queue(self) -> list[QueueEntry]:
        return self.spool.entries()

    @staticmethod
    def _qid(qid: str) -> str:
        if not re.match(QUEUE_ID_PATTERN, qid):
            raise Invalid(f"not a queue id: {qid!r}", "qid")
        return qid

    def queued(self, qid: str) -> tuple[QueueEntry, str]:
        """One queued message's envelope and header section."""
        entry = self.spool.load(self._qid(qid))
        if entry is None:
            raise NotFound(f"no queued message {qid}", "qid")
        try:
            head = self.spool.read_message(qid).split(b"\r\n\r\n", 1)[0]
        except FileNotFoundError:
            raise NotFound(f"no queued message {qid}", "qid") from None
        return entry, head.decode("utf-8", "replace")

    def change_queue(self, action: str, qids: Sequence[str] = ()) -> QueueChange:
        """Flush, hold, release or delete queued messages (a flush of none: all of them)."""
        if action not in QUEUE_ACTIONS:
            raise Invalid(f"an action is one of {', '.join(QUEUE_ACTIONS)}", "action")
        spool = self.spool
        chosen = [self._qid(q) for q in qids] or (
            [e.qid for e in spool.entries()] if action == "flush" else []
        )
        missing = [q for q in chosen if not getattr(spool, action)(q)]
        done = [q for q in chosen if q not in missing]
        notified = self.notify(done) if done and action in ("flush", "release") else ""
        return QueueChange(done, missing, notified)

    @staticmethod
    def lane(entry: QueueEntry) -> str:
        return lane_of(entry)
