"""Targets: what the conformance suite checks, the default reference node or a TOML description.

Without ``--mailspec-target`` the suite starts the reference (``reference.testing``) in
process, with the fake internet when ``fakes.internet`` is importable and a manual clock,
and grants every capability: it creates the domain ``example.test`` with the accounts
``alice@`` and ``bob@`` (random passwords), points the reference's resolver at the fake DNS
and its relay at the fake MXs (``relay.port``, ``relay.smarthost``, a source pool in
127.0.1.0/24), shares the manual clock with the fake MXs, and lets the MX take a PROXY
header from 127.0.0.0/8. Where a ``clamd`` binary is installed (on PATH or /usr/sbin; the
variable ``MAILSPEC_CLAMD`` names another, or ``none``) it also starts clamd with the
project's own signatures and grants ``antivirus``; where not, the virus requirements are
not applicable, with the package to install as the reason. ``--mailspec-target FILE``
describes any other mail system::

    # Every key but [endpoints] and domain is optional. Unknown keys are errors.
    name = "postfix-staging"          # shown in the report (default: the file's stem)
    domain = "example.com"            # the local domain the test accounts live in
    hostname = "mx1.example.com"      # if set, greeting and EHLO must name this host
    timeout = 10.0                    # seconds for each connect and each reply
    capabilities = ["proxy-protocol"] # what the target grants the suite, among:
    #   "fake-dns"        the target's resolver uses the suite's fake DNS ([fake_dns] below)
    #   "clock"           the suite can move the target's clock ([clock] below)
    #   "admin"           the suite can create domains and accounts ([admin] below)
    #   "proxy-protocol"  the suite may send a PROXY header (v1) to claim a client address
    #   ("restart" is granted by the key below, never listed here)
    #   ("antivirus", a virus scanner that knows EICAR, is always granted: whether the
    #   platform scans is the feature "virus-scan" below)
    features = ["spam-filter", "virus-scan"]  # platform promises the target makes, among:
    #   "spam-filter"            spam is scored, refused or filed (inbound and outbound)
    #   "virus-scan"             a virus is refused (inbound and outbound)
    #   "greylisting"            an unknown triple is deferred once (451 4.7.1)
    #   "dnsbl"                  clients listed in a DNS blocklist are refused or scored
    #   "sender-authentication"  SPF, DKIM and DMARC checked and enforced on inbound mail
    #   "dmarc-reports"          DMARC aggregate reports sent and received
    #   "dkim-signing"           outbound mail DKIM-signed
    #   "rate-limit"             recipients per user and window limited on submission
    #   "relay-policy"           bulk lane, delay warnings, maximum age, reputation retries
    #                            from other source addresses, smarthost fallback
    #   "sender-ownership"       an authenticated user sends only as addresses they own
    #   "auth-throttling"        failed logins slowed down, then locked out
    #   "special-use"            IMAP SPECIAL-USE attributes on the standard mailboxes
    #   "helo-required"          MAIL before HELO/EHLO refused
    #   "sieve"                  users' Sieve filters and vacation, over ManageSieve
    #   "addresses"              user+detail, catch-alls, multi-target and remote aliases,
    #                            alias domains, deleted accounts refused
    #   "forwarding"             forwarding elsewhere with SRS, bounces back to the sender
    #   "access-lists"           access lists by client, HELO, sender, recipient
    #   "classes-of-service"     quota, rate limits, size, permissions per class
    # A PLATFORM requirement of a feature not listed is reported "not claimed" (neither a
    # pass nor a fail); RFC requirements, and the policies every mail system owes (no open
    # relay, no STARTTLS injection, bare CR/LF, control characters), never depend on it.
    # The in-process reference claims them all. Default: none.

    restart = "systemctl kill -s KILL postfix && systemctl start postfix"
                                      # a shell command that restarts the target, as
                                      # abruptly as it can (kill -9 is best); the suite
                                      # then waits until every endpoint answers again.
                                      # Without it, RFC 5321 6.1 (no accepted message
                                      # lost) is not applicable

    [budget]                          # for each property-based test (state model, fuzzer):
    seconds = 20.0                    # the time it may take here (default 20), and
    examples = 50                     # at most this many examples (default: its own count)

    [endpoints]                       # URLs; leave out what the target does not run
    smtp = "smtp://192.0.2.10:25"           # inbound MX (STARTTLS optional)
    submission = "smtp://192.0.2.10:587"    # RFC 6409: STARTTLS, then AUTH
    submissions = "smtps://192.0.2.10:465"  # RFC 8314: implicit TLS
    imap = "imap://192.0.2.11:143"
    imaps = "imaps://192.0.2.11:993"
    pop3 = "pop3://192.0.2.11:110"
    pop3s = "pop3s://192.0.2.11:995"
    managesieve = "sieve://192.0.2.11:4190"  # RFC 5804: STARTTLS, then AUTHENTICATE

    [accounts.primary]                # a mailbox in `domain` the suite may log in to;
                                      # content requirements (8-bit, dots, long lines)
                                      # read what they delivered here, over imaps, imap,
                                      # pop3s or pop3: without both, not applicable
    address = "alice@example.com"
    password_env = "MAILSPEC_ALICE_PASSWORD"   # or: password = "..."
    [accounts.secondary]              # a second mailbox, for tests between two users
    address = "bob@example.com"
    password_env = "MAILSPEC_BOB_PASSWORD"

    [tls]
    cafile = "ca.pem"                 # trust anchor; relative paths are from this file
    insecure = false                  # true: no certificate verification at all
    server_name = "mx1.example.com"   # name to verify when endpoints use IP addresses

    [admin]                           # argv templates, run with placeholders filled in
    add_domain = ["ssh", "mx1", "sudo", "mail-admin", "domain-add", "{domain}"]
    add_user = ["ssh", "mx1", "sudo", "mail-admin", "user-add", "{address}", "{password}"]

    [clock]
    advance = ["ssh", "mx1", "sudo", "faketime-advance", "{seconds}"]

    [fake_dns]
    listen = "192.0.2.1:53"           # where the suite runs its fake DNS: the target's
                                      # resolver must be configured to ask it

    [expect]                          # where this target reads an RFC otherwise, on purpose:
    known_deviations = ["RFC4954-6"]  # requirement ids reported "deviation", not "fail"
    deviations = "deviations.toml"    # a reviewed file of them, each classified and argued:
    #   [[deviation]]
    #   id = "RFC4954-4-98bae4"
    #   class = "deviation"     # "deviation" (read otherwise by design), "configuration"
    #                           # (how this stack is set up), "not-claimed" (a promise the
    #                           # stack does not make, which no feature name covers)
    #   reason = "Postfix answers a bad base64 response with 535, not 501"
    #   reference = "https://www.postfix.org/SASL_README.html"

A capability listed in ``capabilities`` without its table (for those that need one) is
an error, so a target never claims what the suite cannot use. Port defaults follow the
scheme (25 for smtp, but 587 for a ``submission`` endpoint, 465 for smtps, ...). Before
any test runs, every endpoint is probed (:mod:`conformance.probe`: connect, TLS for the
implicit-TLS ones, the greeting read); one that cannot be used stops the run with one
line saying why.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shlex
import socket
import ssl
import subprocess
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from conformance.requirements import CAPABILITIES, FEATURES, not_applicable

__all__ = [
    "DEVIATION_CLASSES",
    "ENDPOINT_ROLES",
    "URIBL_ZONE",
    "Account",
    "Admin",
    "ClockControl",
    "Deviation",
    "Endpoint",
    "PropertyBudget",
    "ReferenceTarget",
    "Restarter",
    "StaticTarget",
    "TLSSettings",
    "Target",
    "TargetError",
    "TargetProvider",
    "load_deviations",
    "load_target",
]

# role -> protocol the role speaks
ENDPOINT_ROLES: Mapping[str, str] = {
    "smtp": "smtp",
    "submission": "smtp",
    "submissions": "smtp",
    "imap": "imap",
    "imaps": "imap",
    "pop3": "pop3",
    "pop3s": "pop3",
    "managesieve": "managesieve",
}
# scheme -> (protocol, implicit TLS, default port)
_SCHEMES: Mapping[str, tuple[str, bool, int]] = {
    "smtp": ("smtp", False, 25),
    "smtps": ("smtp", True, 465),
    "imap": ("imap", False, 143),
    "imaps": ("imap", True, 993),
    "pop3": ("pop3", False, 110),
    "pop3s": ("pop3", True, 995),
    "sieve": ("managesieve", False, 4190),  # RFC 5804 3
}
_ROLE_PORTS: Mapping[str, int] = {"submission": 587}
# The URI blocklist (SURBL style) a target with the "fake-dns" capability is expected to
# look link domains up in; tests list domains in it with fake_dns.blocklist(URIBL_ZONE).
URIBL_ZONE = "uribl.mailspec.test"


class TargetError(ValueError):
    """A target description that cannot be used; the message names the key."""


# How a reviewed deviations file classifies a failure it explains.
DEVIATION_CLASSES: Mapping[str, str] = {
    # The target reads the RFC or the policy otherwise, by design: a real deviation.
    "deviation": "real deviation",
    # The target could keep the promise; the stack run here is not configured to.
    "configuration": "configuration",
    # A platform promise this stack does not make, which no feature name covers.
    "not-claimed": "not claimed",
}


@dataclass(frozen=True)
class Deviation:
    """A failure a target is known to have, and why: its class, reason and reference."""

    id: str
    kind: str
    reason: str
    reference: str = ""

    @property
    def label(self) -> str:
        return DEVIATION_CLASSES.get(self.kind, self.kind)


@dataclass(frozen=True)
class Endpoint:
    """One listener of the target, e.g. ``submission`` at ``smtp://192.0.2.10:587``."""

    role: str
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, role: str, url: str) -> Endpoint:
        if role not in ENDPOINT_ROLES:
            known = ", ".join(ENDPOINT_ROLES)
            raise TargetError(f"endpoints.{role}: unknown endpoint (known: {known})")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise TargetError(f"endpoints.{role}: unknown scheme in {url!r}")
        protocol, implicit_tls, default_port = _SCHEMES[scheme]
        if protocol != ENDPOINT_ROLES[role]:
            raise TargetError(
                f"endpoints.{role}: expected an {ENDPOINT_ROLES[role]} URL, got {url!r}"
            )
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
            raise TargetError(f"endpoints.{role}: expected scheme://host:port, got {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise TargetError(f"endpoints.{role}: bad port in {url!r}") from None
        if port is None:
            port = default_port if implicit_tls else _ROLE_PORTS.get(role, default_port)
        return cls(role, scheme, parts.hostname, port)

    @property
    def protocol(self) -> str:
        """``smtp``, ``imap`` or ``pop3``."""
        return ENDPOINT_ROLES[self.role]

    @property
    def implicit_tls(self) -> bool:
        """TLS from the first byte (smtps, imaps, pop3s) rather than STARTTLS/STLS."""
        return _SCHEMES[self.scheme][1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Account:
    """A mailbox the suite may log in to."""

    address: str
    password: str = field(repr=False)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class TLSSettings:
    """How the suite verifies the target's certificates."""

    cafile: Path | None = None
    insecure: bool = False
    server_name: str | None = None

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True)
class PropertyBudget:
    """The time and examples a property-based test may spend on a target ([budget])."""

    seconds: float = 20.0
    examples: int | None = None


class ClockControl(Protocol):
    """Moves the target's clock: a 24-hour retry story then runs in milliseconds."""

    def advance(self, seconds: float) -> None: ...


class Restarter(Protocol):
    """Restarts the target abruptly; returns once it is started again."""

    def restart(self) -> None: ...


class Admin(Protocol):
    """Creates what a test needs on the target."""

    def add_domain(self, name: str) -> None: ...

    def add_user(self, address: str, password: str) -> None: ...


@dataclass(frozen=True)
class Target:
    """A running target, as tests see it through the ``target`` fixture."""

    name: str
    kind: str
    domain: str
    endpoints: Mapping[str, Endpoint]
    accounts: tuple[Account, ...] = ()
    capabilities: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()
    tls: TLSSettings = TLSSettings()
    hostname: str | None = None
    timeout: float = 10.0
    # What a property-based test (the SMTP state model, the fuzzer) may spend on this
    # target: seconds in all, and examples at most (None: the test's own count).
    budget: PropertyBudget = PropertyBudget()
    clock: ClockControl | None = None
    admin: Admin | None = None
    restarter: Restarter | None = None
    fake_internet: Any = None
    # Why a capability is missing, where the target knows (e.g. clamd not installed): the
    # not-applicable reason then tells the reader how to get the requirement checked.
    capability_notes: Mapping[str, str] = field(default_factory=dict)
    # The in-process reference server, for diagnostics only: tests must not depend on it,
    # or they would not run against other targets.
    server: Any = field(default=None, repr=False, compare=False)

    def endpoint(self, role: str) -> Endpoint:
        """The endpoint for ``role``; a test asking for one the target lacks is not applicable."""
        if role not in ENDPOINT_ROLES:
            raise KeyError(f"unknown endpoint role {role!r}")
        ep = self.endpoints.get(role)
        if ep is None:
            not_applicable(f"target {self.name!r} has no {role!r} endpoint")
        return ep

    def has(self, *capabilities: str) -> bool:
        return all(c in self.capabilities for c in capabilities)

    def require(self, *capabilities: str) -> None:
        """Stop the test as not applicable unless the target grants every capability."""
        missing = sorted(c for c in capabilities if c not in self.capabilities)
        if missing:
            not_applicable(missing_reason(self.name, missing, self.capability_notes))

    @property
    def account(self) -> Account:
        if not self.accounts:
            not_applicable(f"target {self.name!r} has no test account")
        return self.accounts[0]

    @property
    def second_account(self) -> Account:
        if len(self.accounts) < 2:
            not_applicable(f"target {self.name!r} has no second test account")
        return self.accounts[1]

    @property
    def mailbox_account(self) -> Account:
        """An account for tests of one mailbox: the second where there is one (its maildrop
        stays apart from the first's, which most tests fill), the only one otherwise."""
        return self.accounts[1] if len(self.accounts) > 1 else self.account

    def ssl_context(self) -> ssl.SSLContext:
        return self.tls.client_context()

    def server_name(self, endpoint: Endpoint) -> str:
        """The name to check the certificate of ``endpoint`` against."""
        return self.tls.server_name or endpoint.host


def missing_reason(
    name: str, missing: Sequence[str], notes: Mapping[str, str] | None = None
) -> str:
    caps = ", ".join(f"{c!r}" for c in missing)
    why = "; ".join(notes[c] for c in missing if notes and c in notes)
    return f"target {name!r} lacks capability {caps}" + (f": {why}" if why else "")


class TargetProvider(Protocol):
    """What the plugin holds from configure time on: capabilities known, nothing started."""

    name: str
    kind: str
    capabilities: frozenset[str]
    # Platform features the target claims (FEATURES); the rest are reported "not claimed".
    features: frozenset[str]
    # Why a capability is missing, for those the target knows a reason for.
    capability_notes: Mapping[str, str]

    # Requirement ids this target is known to read otherwise ([expect] in its TOML).
    known_deviations: frozenset[str]

    def start(self, workdir: Path) -> Target: ...

    def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def _describe(
    target: Target | None, name: str, kind: str, caps: frozenset[str], features: frozenset[str]
) -> dict[str, Any]:
    # Never passwords: the report is published as a CI artefact.
    out: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "capabilities": sorted(caps),
        "features": sorted(features),
    }
    if target is not None:
        out["domain"] = target.domain
        out["hostname"] = target.hostname
        out["endpoints"] = {role: ep.url for role, ep in sorted(target.endpoints.items())}
        out["accounts"] = [a.address for a in target.accounts]
        out["tls"] = {
            "verify": not target.tls.insecure,
            "cafile": str(target.tls.cafile) if target.tls.cafile else None,
        }
    return out


# -- targets described in TOML ---------------------------------------------------------------


@dataclass
class CommandAdmin:
    """Admin through commands the operator supplies (ssh to the host, a CLI, an API call)."""

    add_domain_argv: Sequence[str]
    add_user_argv: Sequence[str]
    timeout: float = 60.0

    def add_domain(self, name: str) -> None:
        _run(self.add_domain_argv, {"domain": name}, self.timeout)

    def add_user(self, address: str, password: str) -> None:
        _run(self.add_user_argv, {"address": address, "password": password}, self.timeout)


@dataclass
class CommandClock:
    """A clock moved by a command the operator supplies."""

    advance_argv: Sequence[str]
    timeout: float = 60.0

    def advance(self, seconds: float) -> None:
        _run(self.advance_argv, {"seconds": f"{seconds:g}"}, self.timeout)


def _run(argv: Sequence[str], values: Mapping[str, str], timeout: float) -> None:
    cmd = [part.format_map(values) for part in argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        # The password is in argv: show only the program, never the arguments.
        raise RuntimeError(
            f"{shlex.quote(cmd[0])} exited {done.returncode}: {done.stderr.strip()[:500]}"
        )


# Without a `restart` command, why the requirements that need one are not applicable.
NO_RESTART = 'the target file gives no restart command (e.g. restart = "systemctl restart postfix")'


@dataclass
class CommandRestarter:
    """Restarts the target with the operator's shell command, then waits until every
    endpoint answers again (the same probe as before the run)."""

    command: str
    endpoints: Sequence[Endpoint]
    timeout: float = 120.0

    def restart(self) -> None:
        done = subprocess.run(
            self.command, shell=True, capture_output=True, text=True, timeout=self.timeout
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"restart command exited {done.returncode}: {done.stderr.strip()[:500]}"
            )
        _wait_listening(self.endpoints, self.timeout)


def _wait_listening(endpoints: Sequence[Endpoint], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for ep in endpoints:
        while True:
            try:
                socket.create_connection((ep.host, ep.port), timeout=5).close()
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ep.url} not listening after the restart: {e}") from e
                time.sleep(0.2)


class StaticTarget:
    """A target described by a TOML file: already running, nothing to start."""

    kind = "external"

    def __init__(
        self,
        target: Target,
        fake_dns_listen: str | None = None,
        deviations: Mapping[str, Deviation] | None = None,
    ) -> None:
        self.target = target
        self.name = target.name
        self.capabilities = target.capabilities
        self.features = target.features
        self.capability_notes: Mapping[str, str] = (
            {} if "restart" in target.capabilities else {"restart": NO_RESTART}
        )
        self.deviations: Mapping[str, Deviation] = dict(deviations or {})
        self.known_deviations = frozenset(self.deviations)
        self._fake_dns_listen = fake_dns_listen
        self._fake: Any = None
        self._started: Target | None = None

    def start(self, workdir: Path) -> Target:
        if self._started is None:
            target = self.target
            if self._fake_dns_listen is not None:
                # The target's resolver points at a fixed address, so the fake DNS must
                # listen exactly there.
                host, _, port = self._fake_dns_listen.rpartition(":")
                self._fake = _start_fake_internet(dns_host=host.strip("[]"), dns_port=int(port))
                target = replace(target, fake_internet=self._fake)
            self._started = target
        return self._started

    def stop(self) -> None:
        if self._fake is not None:
            self._fake.stop()
            self._fake = None

    def describe(self) -> dict[str, Any]:
        out = _describe(self.target, self.name, self.kind, self.capabilities, self.features)
        if self.known_deviations:
            out["known_deviations"] = sorted(self.known_deviations)
            out["deviations"] = {
                d.id: {"class": d.kind, "reason": d.reason, "reference": d.reference}
                for d in sorted(self.deviations.values(), key=lambda d: d.id)
            }
        return out


_TOP_KEYS = {
    "name",
    "domain",
    "hostname",
    "timeout",
    "budget",
    "capabilities",
    "features",
    "endpoints",
    "accounts",
    "tls",
    "admin",
    "clock",
    "fake_dns",
    "expect",
    "restart",
}


def _read_toml(path: Path, prefix: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TargetError(f"{prefix}{path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{prefix}{path}: {e}") from None


def load_target(path: Path, *, environ: Mapping[str, str] | None = None) -> StaticTarget:
    """Read a TOML target description (format in this module's docstring)."""
    env = os.environ if environ is None else environ
    data = _read_toml(path, "")
    try:
        return _from_dict(data, base=path.parent, default_name=path.stem, env=env)
    except TargetError as e:
        raise TargetError(f"{path}: {e}") from None


def _from_dict(
    data: Mapping[str, Any], *, base: Path, default_name: str, env: Mapping[str, str]
) -> StaticTarget:
    _no_unknown(data, _TOP_KEYS, "")
    name = _str(data, "name", default_name)
    domain = _str(data, "domain", None)
    hostname = data.get("hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise TargetError("hostname: expected a string")
    timeout = data.get("timeout", 10.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise TargetError("timeout: expected a positive number of seconds")

    caps_raw = _names(data, "capabilities", CAPABILITIES)
    # Scanning is a platform promise ("virus-scan" in features), not a grant the suite
    # needs: a target that claims it is checked; one that does not is "not claimed".
    caps = frozenset(caps_raw) | {"antivirus"}
    features_raw = _names(data, "features", FEATURES)

    eps_raw = data.get("endpoints")
    if not isinstance(eps_raw, dict) or not eps_raw:
        raise TargetError("endpoints: expected a table with at least one endpoint URL")
    endpoints: dict[str, Endpoint] = {}
    for role, url in eps_raw.items():
        if not isinstance(url, str):
            raise TargetError(f"endpoints.{role}: expected a URL string")
        endpoints[role] = Endpoint.parse(role, url)

    accounts: list[Account] = []
    acc_raw = data.get("accounts", {})
    if not isinstance(acc_raw, dict):
        raise TargetError("accounts: expected a table")
    _no_unknown(acc_raw, {"primary", "secondary"}, "accounts.")
    if "secondary" in acc_raw and "primary" not in acc_raw:
        raise TargetError("accounts.secondary given without accounts.primary")
    for which in ("primary", "secondary"):
        if which in acc_raw:
            accounts.append(_account(acc_raw[which], f"accounts.{which}", env))

    tls_raw = data.get("tls", {})
    if not isinstance(tls_raw, dict):
        raise TargetError("tls: expected a table")
    _no_unknown(tls_raw, {"cafile", "insecure", "server_name"}, "tls.")
    cafile: Path | None = None
    if "cafile" in tls_raw:
        cafile = (base / _str(tls_raw, "cafile", None, "tls.")).resolve()
        if not cafile.is_file():
            raise TargetError(f"tls.cafile: no such file {cafile}")
    insecure = tls_raw.get("insecure", False)
    if not isinstance(insecure, bool):
        raise TargetError("tls.insecure: expected true or false")
    server_name = tls_raw.get("server_name")
    if server_name is not None and not isinstance(server_name, str):
        raise TargetError("tls.server_name: expected a string")

    admin: Admin | None = None
    clock: ClockControl | None = None
    fake_dns_listen: str | None = None
    for cap, table in (("admin", "admin"), ("clock", "clock"), ("fake-dns", "fake_dns")):
        if (cap in caps) != (table in data):
            if cap in caps:
                raise TargetError(f"capability {cap!r} needs a [{table}] table")
            raise TargetError(f"[{table}] given but {cap!r} is not in capabilities")
    if "admin" in data:
        adm = _table(data, "admin", {"add_domain", "add_user"})
        admin = CommandAdmin(_argv(adm, "add_domain", "admin."), _argv(adm, "add_user", "admin."))
    if "clock" in data:
        clk = _table(data, "clock", {"advance"})
        clock = CommandClock(_argv(clk, "advance", "clock."))
    if "fake_dns" in data:
        fdns = _table(data, "fake_dns", {"listen"})
        fake_dns_listen = _str(fdns, "listen", None, "fake_dns.")
        _, colon, port = fake_dns_listen.rpartition(":")
        if not colon or not port.isdigit():
            raise TargetError(f"fake_dns.listen: expected host:port, got {fake_dns_listen!r}")

    restarter: Restarter | None = None
    if "restart" in caps:
        raise TargetError("capabilities: 'restart' is granted by a restart command, not listed")
    if "restart" in data:
        caps |= {"restart"}
        restarter = CommandRestarter(_str(data, "restart", None), list(endpoints.values()))

    deviations: dict[str, Deviation] = {}
    if "expect" in data:
        exp = _table(data, "expect", {"known_deviations", "deviations"})
        ids = exp.get("known_deviations", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise TargetError("expect.known_deviations: expected a list of requirement ids")
        listed = "listed in expect.known_deviations"
        deviations = {i: Deviation(i, "deviation", listed) for i in ids}
        if "deviations" in exp:
            path = (base / _str(exp, "deviations", None, "expect.")).resolve()
            deviations.update(load_deviations(path))

    target = Target(
        name=name,
        kind=StaticTarget.kind,
        domain=domain,
        endpoints=endpoints,
        accounts=tuple(accounts),
        capabilities=caps,
        features=frozenset(features_raw),
        tls=TLSSettings(cafile=cafile, insecure=insecure, server_name=server_name),
        hostname=hostname,
        timeout=float(timeout),
        budget=_budget(data),
        clock=clock,
        admin=admin,
        restarter=restarter,
    )
    return StaticTarget(target, fake_dns_listen, deviations)


def load_deviations(path: Path) -> dict[str, Deviation]:
    """Read a reviewed deviations file: ``[[deviation]]`` tables with id, class, reason and
    reference (conformance/peers/deviations.toml is one)."""
    data = _read_toml(path, "expect.deviations: ")
    _no_unknown(data, {"deviation"}, f"{path}: ")
    entries = data.get("deviation", [])
    if not isinstance(entries, list):
        raise TargetError(f"{path}: expected [[deviation]] tables")
    out: dict[str, Deviation] = {}
    for n, entry in enumerate(entries, 1):
        where = f"{path}: deviation {n}: "
        if not isinstance(entry, dict):
            raise TargetError(f"{where}expected a table")
        _no_unknown(entry, {"id", "class", "reason", "reference"}, where)
        dev = Deviation(
            _str(entry, "id", None, where),
            _str(entry, "class", None, where),
            _str(entry, "reason", None, where),
            _str(entry, "reference", None, where),
        )
        if dev.kind not in DEVIATION_CLASSES:
            known = ", ".join(DEVIATION_CLASSES)
            raise TargetError(f"{where}class: unknown {dev.kind!r} (known: {known})")
        if dev.id in out:
            raise TargetError(f"{where}id: {dev.id} is listed twice")
        out[dev.id] = dev
    return out


def _budget(data: Mapping[str, Any]) -> PropertyBudget:
    if "budget" not in data:
        return PropertyBudget()
    raw = _table(data, "budget", {"seconds", "examples"})
    seconds = raw.get("seconds", PropertyBudget.seconds)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
        raise TargetError("budget.seconds: expected a positive number of seconds")
    examples = raw.get("examples")
    if examples is not None and (
        not isinstance(examples, int) or isinstance(examples, bool) or examples < 1
    ):
        raise TargetError("budget.examples: expected a positive whole number")
    return PropertyBudget(float(seconds), examples)


def _names(data: Mapping[str, Any], key: str, known: Mapping[str, str]) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TargetError(f"{key}: expected a list of strings")
    for name in value:
        if name not in known:
            raise TargetError(f"{key}: unknown {name!r} (known: {', '.join(known)})")
    return value


def _no_unknown(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in data:
        if key not in known:
            raise TargetError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")


def _str(data: Mapping[str, Any], key: str, default: str | None, prefix: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise TargetError(f"{prefix}{key}: expected a non-empty string")
    return value


def _table(data: Mapping[str, Any], key: str, known: set[str]) -> Mapping[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise TargetError(f"{key}: expected a table")
    _no_unknown(value, known, f"{key}.")
    return value


def _argv(data: Mapping[str, Any], key: str, prefix: str) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise TargetError(f"{prefix}{key}: expected a non-empty list of strings (an argv)")
    return value


def _account(raw: Any, where: str, env: Mapping[str, str]) -> Account:
    if not isinstance(raw, dict):
        raise TargetError(f"{where}: expected a table")
    _no_unknown(raw, {"address", "password", "password_env"}, f"{where}.")
    address = _str(raw, "address", None, f"{where}.")
    if "@" not in address:
        raise TargetError(f"{where}.address: expected local@domain")
    if ("password" in raw) == ("password_env" in raw):
        raise TargetError(f"{where}: give exactly one of password and password_env")
    if "password" in raw:
        return Account(address, _str(raw, "password", None, f"{where}."))
    var = _str(raw, "password_env", None, f"{where}.")
    if var not in env:
        raise TargetError(f"{where}.password_env: environment variable {var} is not set")
    return Account(address, env[var])


# -- the reference ----------------------------------------------------------------------------


def fakes_available() -> bool:
    """Whether the fake internet can be started here (it may not be installed)."""
    try:
        return importlib.util.find_spec("fakes.internet") is not None
    except ImportError:
        return False


def _start_fake_internet(**kwargs: Any) -> Any:
    from fakes.internet import FakeInternet  # type: ignore[import-not-found,unused-ignore]

    try:
        fake = FakeInternet(**kwargs)
    except TypeError as e:
        raise RuntimeError(f"fakes.internet.FakeInternet does not accept {kwargs}: {e}") from e
    started = fake.start()
    return fake if started is None else started


# The DNS blocklist the default target consults (tests list addresses in the fake DNS).
DNSBL_ZONE = "zen.spamhaus.test"
# A sender domain the default target never greylists when its SPF passes.
SPF_WHITELISTED = "bigsender.example"


class ReferenceTarget:
    """The default target: the reference started in process, with the fakes and a manual clock.

    Capabilities are known before anything starts, so tests needing what is missing are
    reported not applicable without starting the reference at all.
    """

    kind = "reference"

    def __init__(
        self,
        *,
        name: str = "reference",
        domain: str = "example.test",
        hostname: str = "mail.example.test",
        timeout: float = 10.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.domain = domain
        self.hostname = hostname
        self.timeout = timeout
        # The MX accepts a PROXY header from loopback so that tests can speak for any
        # client address (DNSBL, reputation, connection limits).
        self.overrides: dict[str, Any] = {
            "listen.mx_proxy_from": ["127.0.0.0/8"],
            # A blocklist in the fake DNS: heavy listings (127.0.0.2) refuse, light ones score.
            "dnsbl.zones": [f"{DNSBL_ZONE}=127.0.0.2:10,127.0.0.10:3"],
            # The fake DNS answers at once or, when a test makes it time out, never: a short
            # timeout keeps the DNS-timeout requirements quick.
            "dns.timeout": "1s",
            # Big senders passing SPF skip greylisting.
            "greylist.bypass_spf_domains": [SPF_WHITELISTED],
            # Logins from other loopback addresses count per client address, so the
            # login-limit requirements can guess from an address of their own.
            "submission.auth_ignore_networks": ["127.0.0.1/32", "::1/128"],
        }
        self.overrides.update(overrides or {})
        caps = {"clock", "admin", "proxy-protocol", "restart"}
        if fakes_available():
            caps.add("fake-dns")
        from reference.testing import ClamdNotFound, find_clamd

        notes: dict[str, str] = {}
        self._clamd_binary: str | None = None
        try:
            self._clamd_binary = find_clamd()
            caps.add("antivirus")
        except ClamdNotFound as e:
            # The reference without a scanner would accept viruses: that is this machine's
            # lack, not the reference's, so the virus requirements are not applicable here.
            notes["antivirus"] = str(e)
        self.capabilities = frozenset(caps)
        # The reference implements every platform feature, so it claims them all.
        self.features: frozenset[str] = frozenset(FEATURES)
        self.capability_notes: Mapping[str, str] = notes
        # The reference is the suite's own reading of every RFC: it deviates from none.
        self.known_deviations: frozenset[str] = frozenset()
        self._server: Any = None
        self._fake: Any = None
        self._clamd: Any = None
        self._target: Target | None = None

    def start(self, workdir: Path) -> Target:
        if self._target is not None:
            return self._target
        from reference.clock import ManualClock
        from reference.testing import ClamdServer, ReferenceServer

        clock = ManualClock()
        nameservers: list[str] = []
        overrides: dict[str, Any] = {}
        try:
            if "fake-dns" in self.capabilities:
                # One clock for both sides: a greylisting fake MX must see the time the
                # reference's retry schedule sees.
                self._fake = fake = _start_fake_internet(clock=clock)
                nameservers = [fake.nameserver]
                overrides = {
                    "relay.port": fake.smtp_port,
                    "relay.smarthost": f"{fake.smarthost.host}:{fake.smtp_port}",
                    # Fake MXs judge reputation by source address: relay from a pool.
                    "relay.source_addresses": ["127.0.1.0/24"],
                    # Link domains are looked up in a URI blocklist the tests fill.
                    "spam.uribl_zones": [URIBL_ZONE],
                }
            if self._clamd_binary is not None:
                # A real clamd with the project's own test signatures (EICAR and a marker).
                self._clamd = ClamdServer(workdir / "clamd", self._clamd_binary).start()
                overrides["antivirus.clamd"] = self._clamd.address
            overrides.update(self.overrides)
            self._server = ReferenceServer(
                workdir,
                clock=clock,
                nameservers=nameservers,
                overrides=overrides,
                hostname=self.hostname,
            ).start()
            self._server.add_domain(self.domain)
            if self._fake is not None:
                # What its operator publishes (`mailspec dns records`): the SPF record of the
                # SRS return paths of forwarded mail, the key it is ARC-sealed with, and its
                # domain's DKIM keys (its lists' copies are signed with them).
                key = self._server.arc_key
                self._fake.dns.spf(key.domain, "v=spf1 ip4:127.0.1.0/24 -all")
                keys, _ = self._server.app.admin.dkim_keys(self.domain)
                for k in (key, *keys):
                    value = k.public_record()
                    self._fake.dns.add_txt(
                        k.record_name, *[value[i : i + 255] for i in range(0, len(value), 255)]
                    )
            accounts = tuple(
                Account(f"{local}@{self.domain}", secrets.token_urlsafe(18))
                for local in ("alice", "bob")
            )
            for acc in accounts:
                self._server.add_user(acc.address, acc.password)
        except BaseException:
            self.stop()
            raise
        endpoints: dict[str, Endpoint] = {}
        for name, url in self._server.endpoints.items():
            # The reference calls its inbound listener "mx"; the suite calls it "smtp".
            role = "smtp" if name == "mx" else name
            if role in ENDPOINT_ROLES:
                endpoints[role] = Endpoint.parse(role, url)
        self._target = Target(
            name=self.name,
            kind=self.kind,
            domain=self.domain,
            endpoints=endpoints,
            accounts=accounts,
            capabilities=self.capabilities,
            features=self.features,
            tls=TLSSettings(cafile=Path(self._server.cafile)),
            hostname=self._server.hostname,
            timeout=self.timeout,
            clock=clock,
            admin=self._server,
            # A crash of the App and a new one on the same data directory and ports.
            restarter=self._server,
            fake_internet=self._fake,
            capability_notes=self.capability_notes,
            server=self._server,
        )
        return self._target

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._fake is not None:
            self._fake.stop()
            self._fake = None
        if self._clamd is not None:
            self._clamd.stop()
            self._clamd = None

    def describe(self) -> dict[str, Any]:
        out = _describe(self._target, self.name, self.kind, self.capabilities, self.features)
        if self.capability_notes:
            out["capabilities_missing"] = dict(sorted(self.capability_notes.items()))
        return out
