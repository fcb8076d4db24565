"""The typed configuration: one TOML file, every key documented here, every default embedded."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, get_args, get_origin, get_type_hints

from reference.values import (
    Duration,
    FieldName,
    HeaderField,
    HeloName,
    HostPort,
    LimitOverride,
    Nameserver,
    Network,
    RateLimitSpec,
    SocketAddress,
    Spelled,
    ZoneSpec,
)


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key '{key}': {reason}")
        self.key = key
        self.reason = reason


def doc(text: str, **kw: Any) -> Any:
    """A dataclass field carrying its documentation (the one place keys are documented)."""
    return field(metadata={"doc": text}, **kw)


@dataclass
class Server:
    hostname: str = doc(
        "The name this platform uses in greetings, Received: and its certificate.",
        default="mail.example.test",
    )
    data_dir: str = doc("Where the spool, mailboxes, directory and keys live.", default="./var")
    log_level: str = doc("debug, info, warning or error.", default="info")
    spool_dir: str = doc(
        "The queue's directory; empty: data_dir/spool. The nodes of a cluster share data_dir "
        "(directory, mailboxes, keys, certificate) and each keeps its own spool.",
        default="",
    )
    roles: list[str] = doc(
        "What this node serves: all, or any of mx, submission, imap (with ManageSieve), pop3. "
        "Every node runs its queue runner: it delivers (and relays) what it accepted.",
        default_factory=lambda: ["all"],
    )
    workers: int = doc(
        "Processes serving this node, sharing its listeners (each with its own event loop; "
        "all policy state in the stores); 0: one per core. 1 runs a single process. Each "
        "worker delivers the mail it accepts; the first also runs the queue runner "
        "(retries, flush, DSNs, the spool lease), the web listener and ManageSieve.",
        default=0,
    )


@dataclass
class Listen:
    mx: HostPort = doc("Inbound MX SMTP (STARTTLS offered).", default=HostPort("127.0.0.1:2525"))
    submission: HostPort = doc(
        "Submission, RFC 6409 (STARTTLS, then AUTH, required).", default=HostPort("127.0.0.1:2587")
    )
    submissions: HostPort = doc(
        "Submission over implicit TLS, RFC 8314.", default=HostPort("127.0.0.1:2465")
    )
    imap: HostPort = doc(
        "IMAP (STARTTLS required before login).", default=HostPort("127.0.0.1:2143")
    )
    imaps: HostPort = doc("IMAP over implicit TLS.", default=HostPort("127.0.0.1:2993"))
    pop3: HostPort = doc("POP3 (STLS required before login).", default=HostPort("127.0.0.1:2110"))
    pop3s: HostPort = doc("POP3 over implicit TLS.", default=HostPort("127.0.0.1:2995"))
    managesieve: HostPort = doc(
        "ManageSieve, RFC 5804: users manage their Sieve scripts (STARTTLS required before "
        "AUTHENTICATE).",
        default=HostPort("127.0.0.1:2419"),
    )
    web: HostPort = doc(
        "The control plane over HTTPS (same certificate): the control panel (/), the admin "
        "API /api/v1, /metrics, /healthz and /readyz. Every node opens it, whatever its roles.",
        default=HostPort("127.0.0.1:2443"),
    )
    mx_proxy_from: list[Network] = doc(
        "Networks (CIDR) allowed to send a PROXY protocol header on the MX port.",
        default_factory=list,
    )


@dataclass
class Tls:
    cert: str = doc(
        "PEM certificate chain; empty: a self-signed one under data_dir/tls.", default=""
    )
    key: str = doc("PEM private key for tls.cert.", default="")


@dataclass
class Dns:
    nameservers: list[Nameserver] = doc(
        "Resolvers as host:port; empty means the system resolver.", default_factory=list
    )
    timeout: Duration = doc(
        "How long one lookup may take before it is a temporary error.", default=Duration("5s")
    )


@dataclass
class Smtp:
    max_message_size: int = doc(
        "Largest message accepted, bytes (advertised in SIZE).", default=26_214_400
    )
    max_recipients: int = doc(
        "Recipients per transaction (RFC 5321 asks for at least 100).", default=1000
    )
    timeout: Duration = doc(
        "Idle timeout of an SMTP session (RFC 5321 4.5.3.2: 5 minutes).", default=Duration("5m")
    )
    max_backlog: int = doc(
        "Messages in the spool beyond which MAIL gets 451 4.3.2 (0: no limit).", default=20000
    )
    flow_backlog: int = doc(
        "Messages accepted and not yet attempted (counted by each worker process, which "
        "delivers what it accepts; mail deferred for a retry is not counted) beyond which "
        "the reply to MAIL waits (up to smtp.flow_delay) for delivery to catch up, as "
        "Postfix's in_flow_delay (0: never wait for this count).",
        default=1000,
    )
    flow_lag: Duration = doc(
        "How long the oldest message a worker process accepted may wait for its first "
        "attempt before the reply to MAIL waits (up to smtp.flow_delay) for delivery to "
        "catch up (0: never wait for this age).",
        default=Duration("250ms"),
    )
    flow_delay: Duration = doc(
        "The longest a MAIL reply waits for delivery to catch up (then the checks go on; "
        "past smtp.max_backlog they answer 451 4.3.2).",
        default=Duration("1s"),
    )
    max_connections: int = doc(
        "Concurrent connections per SMTP listener (421 4.7.0 beyond), counted by each worker "
        "process (server.workers).",
        default=1000,
    )
    max_connections_per_client: int = doc(
        "Concurrent connections from one client address (after PROXY: the real client), "
        "counted by each worker process.",
        default=20,
    )


@dataclass
class Relay:
    port: int = doc(
        "The TCP port of remote MXs (25 on the internet; tests use others).", default=25
    )
    source_addresses: list[Network] = doc(
        "Source addresses or CIDR ranges the relay sends from; empty: the system's choice.",
        default_factory=list,
    )
    smarthost: HostPort | None = doc(
        "host:port to hand mail to when direct delivery fails; empty: none.", default=None
    )
    max_age: Duration = doc(
        "How long a message is retried before it bounces with a DSN.", default=Duration("24h")
    )
    delay_warning: Duration = doc(
        "After how long the sender gets one 'delivery delayed' DSN.", default=Duration("4h")
    )
    reputation_retries: int = doc(
        "Source addresses tried at once when a receiver refuses for reputation.", default=3
    )
    timeout: Duration = doc(
        "Timeout of each step of an outbound SMTP session.", default=Duration("5m")
    )
    helo_names: list[HeloName] = doc(
        "The EHLO name per source address, 'ADDRESS=NAME' (e.g. '127.0.1.5=out5.example.test'): "
        "each should match the address's PTR record; other addresses use server.hostname.",
        default_factory=list,
    )


@dataclass
class Queue:
    retry: list[Duration] = doc(
        "Backoff between delivery attempts; the last value repeats until relay.max_age.",
        default_factory=lambda: [Duration(d) for d in ("1m", "5m", "15m", "30m", "1h", "2h", "4h")],
    )
    concurrency: int = doc(
        "Messages delivered at once in the regular lane (person-to-person mail).", default=16
    )
    bulk_concurrency: int = doc(
        "Messages delivered at once in the bulk lane, on top of the regular lane's: mass "
        "mail never takes the regular lane's slots.",
        default=4,
    )
    bulk_recipients: int = doc(
        "A message to this many recipients or more takes the bulk lane (so does one with "
        "Precedence: bulk or list, List-Unsubscribe or List-Id, or from an account marked "
        "with `mailspec user bulk`); 0: never by count.",
        default=20,
    )


@dataclass
class State:
    url: str = doc(
        "Shared policy state: empty for SQLite under data_dir (one node), or redis://host:port/db"
        " for several nodes.",
        default="",
    )


@dataclass
class DirectoryDatabase:
    url: str = doc(
        "The directory's database (domains, accounts, aliases, lists, classes of service): "
        "empty for SQLite under data_dir (directory.sqlite3), or a URL: sqlite:///path, "
        "mysql://user:password@host:port/database for MariaDB (the nodes of a cluster share "
        'it), postgresql://user:password@host/database (pip install "mailspec[postgresql]").',
        default="",
    )


@dataclass
class Greylist:
    enabled: bool = doc(
        "Greylist unknown (client /24 or /64, sender, recipient) triplets.", default=True
    )
    delay: Duration = doc(
        "How long a new triplet must wait before a retry is accepted.", default=Duration("5m")
    )
    window: Duration = doc(
        "How long after the first attempt a retry still counts.", default=Duration("4h")
    )
    whitelist: Duration = doc(
        "How long a client network that passed once is trusted.", default=Duration("36d")
    )
    bypass_networks: list[Network] = doc(
        "Client networks never greylisted (CIDR).",
        default_factory=lambda: [Network("127.0.0.0/8"), Network("::1/128")],
    )
    bypass_spf_domains: list[str] = doc(
        "Sender domains (and their subdomains) never greylisted when their SPF passes.",
        default_factory=list,
    )


@dataclass
class Dnsbl:
    zones: list[ZoneSpec] = doc(
        "Blocklists: 'zone' (any listing weighs 10) or 'zone=127.0.0.2:10,127.0.0.4:3' "
        "(return code:weight).",
        default_factory=list,
    )
    reject_score: int = doc(
        "Summed weight at which a listed client is refused (554 5.7.1).", default=10
    )


@dataclass
class Ratelimit:
    recipients: RateLimitSpec = doc(
        "Recipients a user may send to per window (COUNT/DURATION; empty: unlimited).",
        default=RateLimitSpec("60/5m"),
    )
    messages: RateLimitSpec = doc(
        "Messages a user may send per window; empty: unlimited.", default=RateLimitSpec("")
    )
    bytes: RateLimitSpec = doc(
        "Bytes a user may send per window; empty: unlimited.", default=RateLimitSpec("")
    )
    overrides: list[LimitOverride] = doc(
        "Per user or domain: 'alice@example.test: recipients=500/5m, messages=100/1h'.",
        default_factory=list,
    )


@dataclass
class Auth:
    verify: bool = doc(
        "Check SPF, DKIM, DMARC and ARC on inbound mail and add Authentication-Results.",
        default=True,
    )
    dmarc_reject: bool = doc(
        "Refuse (550 5.7.1) mail failing DMARC whose domain asks p=reject; false: file it "
        "into Junk instead.",
        default=True,
    )
    dmarc_quarantine: bool = doc(
        "File mail failing DMARC whose domain asks p=quarantine into Junk; false: the inbox.",
        default=True,
    )
    dmarc_tempfail: bool = doc(
        "Answer 451 4.4.3 rather than refuse when a DNS error may have hidden an aligned "
        "SPF or DKIM pass (or the DMARC record itself).",
        default=True,
    )
    arc_trusted: list[str] = doc(
        "Domains whose ARC seal, on a chain that validates, lets mail failing DMARC through "
        "(mailing lists and forwarders you trust).",
        default_factory=list,
    )
    sign: bool = doc(
        "DKIM-sign mail submitted for our domains; missing keys are made under "
        "data_dir/dkim on first use (print them with `mailspec dns records DOMAIN`).",
        default=True,
    )
    selector: str = doc(
        "DKIM selector: keys are published at <selector>-rsa._domainkey.<domain> and "
        "<selector>-ed25519._domainkey.<domain>.",
        default="mailspec",
    )
    sign_algorithms: list[str] = doc(
        "Signatures added to each submitted message: rsa-sha256, ed25519-sha256, or both.",
        default_factory=lambda: ["rsa-sha256", "ed25519-sha256"],
    )


@dataclass
class Dmarc:
    reports: bool = doc(
        "Send DMARC aggregate reports (RFC 7489 7.2) to the rua= addresses of the domains whose "
        "policies inbound mail was checked against; evaluations wait in data_dir/dmarc.sqlite3.",
        default=True,
    )
    report_from: str = doc(
        "From address and envelope sender of the reports; empty: dmarc-reports@<server.hostname>. "
        "Mail to or from it is never the reason for a report (no reports about reports).",
        default="",
    )
    org_name: str = doc(
        "The reporting organization named in each report (org_name, RFC 7489 7.2.1); "
        "empty: server.hostname.",
        default="",
    )
    report_interval: Duration = doc(
        "How often reports are built and sent (RFC 7489 7.2: at least once a day).",
        default=Duration("24h"),
    )


@dataclass
class Antivirus:
    clamd: SocketAddress | None = doc(
        "clamd to scan every message with: host:port or a Unix socket path; empty: no scan.",
        default=None,
    )
    timeout: Duration = doc("How long one scan may take.", default=Duration("30s"))
    fail_open: bool = doc(
        "Accept unscanned mail when clamd cannot answer (default: 451, the sender retries).",
        default=False,
    )


@dataclass
class Spam:
    enabled: bool = doc(
        "Score every message at DATA (rules, phishing links, URI blocklists, Bayes, Office "
        "macros, the client's DNSBL score), inbound and submitted.",
        default=True,
    )
    reject_score: float = doc(
        "Score at which a message is refused during the dialogue (550 5.7.1 stating the "
        "score); submitted mail too. Domains and accounts may set their own inbound "
        "thresholds (`mailspec spam settings`).",
        default=10.0,
    )
    junk_score: float = doc(
        "Score at which an inbound message is accepted into the recipient's Junk folder, "
        "with X-Spam-Status and X-Spam-Flag fields.",
        default=5.0,
    )
    uribl_zones: list[ZoneSpec] = doc(
        "URI blocklists: the registered domain of each link is looked up as <domain>.<zone>; "
        "'zone' (any listing weighs 10) or 'zone=127.0.0.2:10,127.0.0.4:3'.",
        default_factory=list,
    )
    bayes: bool = doc(
        "Bayesian classifier trained from Junk moves over IMAP and `mailspec spam learn`: "
        "a global one and one per account; tokens in data_dir/bayes.sqlite3, or in the "
        "Redis of state.url when set.",
        default=True,
    )
    bayes_min: int = doc(
        "Spam and ham messages each that Bayes must have learnt before it adds score.",
        default=200,
    )
    bayes_user_min: int = doc(
        "Spam and ham messages each that an account's own Bayes must have learnt before it "
        "scores that account's mail instead of the global one.",
        default=200,
    )
    macro_score: float = doc(
        "Score for VBA macros in an Office attachment; added again for auto-execution, for "
        "suspicious calls, and for both together. 0: no macro check.",
        default=3.0,
    )
    macro_max_size: int = doc(
        "Largest Office document (bytes, also uncompressed) analysed for macros.",
        default=10_485_760,
    )


@dataclass
class Mailbox:
    quota_bytes: int = doc(
        "Storage quota per account in bytes, over all its folders; 0: unlimited.", default=0
    )
    quota_messages: int = doc("Message quota per account; 0: unlimited.", default=0)


@dataclass
class Sieve:
    enabled: bool = doc(
        "Run each account's active Sieve script (RFC 5228) at local delivery.", default=True
    )
    max_script_size: int = doc("Largest script a user may store, bytes.", default=65536)
    max_scripts: int = doc("Scripts per account.", default=20)
    max_redirects: int = doc(
        "Redirects one script may make for one message; past it the script fails and the "
        "message is kept.",
        default=4,
    )
    max_steps: int = doc(
        "Commands and tests one run may evaluate (bounds its run time); past it the script "
        "fails and the message is kept.",
        default=10000,
    )


@dataclass
class Addresses:
    delimiter: str = doc(
        "RFC 5233 subaddressing: mail to user+detail@domain goes to user@domain when no "
        "address user+detail exists (+, -, _, # or =; empty: off).",
        default="+",
    )


@dataclass
class Srs:
    domain: str = doc(
        "The domain of the return path of forwarded mail (SRS0=…@domain, the Sender "
        "Rewriting Scheme of postsrsd), so that it passes SPF where it is forwarded to: "
        "publish an SPF record for it naming relay.source_addresses. Empty: server.hostname. "
        "The HMAC secrets are in data_dir/srs/secrets (made at first start; a new first line "
        "rotates the key, older lines still verify).",
        default="",
    )
    max_age: Duration = doc(
        "How long a bounce to a rewritten address is accepted (whole days; older ones get "
        "550 5.1.1 at RCPT).",
        default=Duration("21d"),
    )


@dataclass
class Submission:
    auth_max_failures: int = doc(
        "Failed logins to one account (SMTP AUTH, IMAP, POP3) within auth_window that lock "
        "it for auth_lockout: then even the right password gets 454 4.7.0.",
        default=10,
    )
    auth_max_failures_per_client: int = doc(
        "Failed logins from one client address (an IPv6 /64) within auth_window that lock "
        "that address out of SMTP AUTH for auth_lockout.",
        default=30,
    )
    auth_window: Duration = doc("How long a failed login counts.", default=Duration("15m"))
    auth_lockout: Duration = doc("How long a lockout lasts.", default=Duration("30m"))
    auth_delay: Duration = doc(
        "Delay of the reply to a failed login after the first auth_delay_after ones, doubled "
        "with each further failure up to auth_max_delay; 0: no delay.",
        default=Duration("1s"),
    )
    auth_delay_after: int = doc("Failed logins answered at once (typos).", default=3)
    auth_max_delay: Duration = doc(
        "The longest delay of a failed login's reply.", default=Duration("30s")
    )
    auth_ignore_networks: list[Network] = doc(
        "Client networks not counted per address (their accounts still are): a webmail or "
        "proxy on this host speaks for many users.",
        default_factory=lambda: [Network("127.0.0.0/8"), Network("::1/128")],
    )


@dataclass
class Headers:
    remove: list[FieldName] = doc(
        "Header fields removed from submitted mail before it is signed (e.g. User-Agent).",
        default_factory=lambda: [FieldName("X-Originating-IP")],
    )
    add: list[HeaderField] = doc(
        "Header fields added to submitted mail, 'Name: value' (e.g. 'X-Mailspec-Submitted: yes').",
        default_factory=list,
    )


@dataclass
class Disclaimer:
    enabled: bool = doc(
        "Append the sender domain's disclaimer to submitted mail (text and HTML parts; "
        "signed and encrypted mail is left alone).",
        default=True,
    )
    dir: str = doc(
        "Where the disclaimers are: <domain>.txt and optionally <domain>.html; empty: "
        "data_dir/disclaimers. A domain without a file gets none.",
        default="",
    )


@dataclass
class Config:
    server: Server = field(default_factory=Server)
    listen: Listen = field(default_factory=Listen)
    tls: Tls = field(default_factory=Tls)
    dns: Dns = field(default_factory=Dns)
    smtp: Smtp = field(default_factory=Smtp)
    relay: Relay = field(default_factory=Relay)
    queue: Queue = field(default_factory=Queue)
    state: State = field(default_factory=State)
    directory: DirectoryDatabase = field(default_factory=DirectoryDatabase)
    greylist: Greylist = field(default_factory=Greylist)
    dnsbl: Dnsbl = field(default_factory=Dnsbl)
    ratelimit: Ratelimit = field(default_factory=Ratelimit)
    antivirus: Antivirus = field(default_factory=Antivirus)
    auth: Auth = field(default_factory=Auth)
    dmarc: Dmarc = field(default_factory=Dmarc)
    mailbox: Mailbox = field(default_factory=Mailbox)
    sieve: Sieve = field(default_factory=Sieve)
    addresses: Addresses = field(default_factory=Addresses)
    srs: Srs = field(default_factory=Srs)
    spam: Spam = field(default_factory=Spam)
    submission: Submission = field(default_factory=Submission)
    headers: Headers = field(default_factory=Headers)
    disclaimer: Disclaimer = field(default_factory=Disclaimer)

    @property
    def data_path(self) -> Path:
        """``server.data_dir`` made absolute (a relative one is read from the working folder),
        so that every message that names it says which folder a command really used."""
        return Path(self.server.data_dir).absolute()

    @property
    def dmarc_report_from(self) -> str:
        """The address DMARC aggregate reports come from: ``dmarc.report_from``, else
        dmarc-reports@<server.hostname>."""
        return (self.dmarc.report_from or f"dmarc-reports@{self.server.hostname}").lower()

    @property
    def srs_domain(self) -> str:
        """The domain of rewritten return paths: ``srs.domain``, else the host name."""
        return (self.srs.domain or self.server.hostname).lower()

    @property
    def spool_path(self) -> Path:
        if self.server.spool_dir:
            return Path(self.server.spool_dir).absolute()
        return self.data_path / "spool"

    @property
    def pid_path(self) -> Path:
        """Where `mailspec serve` writes its pid: next to the spool when the node owns one of
        its own (as Postfix keeps master.pid in its queue directory), else under data_dir."""
        if self.server.spool_dir:
            return self.spool_path / "mailspec.pid"
        return self.data_path / "mailspec.pid"

    def serves(self, listener: str) -> bool:
        """Whether this node opens ``listener`` (see ``server.roles``)."""
        roles = self.server.roles
        if listener not in LISTENER_ROLES:
            return True  # the web listener: health and metrics are every node's
        return "all" in roles or LISTENER_ROLES[listener] in roles

    # Derived, validated views used by the composition root.
    def address(self, name: str) -> tuple[str, int]:
        listen: HostPort = getattr(self.listen, name)
        return listen.pair


LISTENERS = (
    "mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "managesieve", "web",
)  # fmt: skip
# The role (``server.roles``) each listener belongs to.
LISTENER_ROLES = {
    "mx": "mx",
    "submission": "submission",
    "submissions": "submission",
    "imap": "imap",
    "imaps": "imap",
    "pop3": "pop3",
    "pop3s": "pop3",
    "managesieve": "imap",  # a user's mailbox settings, beside IMAP
}
ROLES = ("all", "mx", "submission", "imap", "pop3")


def _sections() -> dict[str, type[Any]]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _check_type(key: str, value: Any, expected: Any) -> Any:
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if expected is Duration:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(key, f'expected a duration such as "5m", got {value!r}')
        try:
            return Duration(value)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if isinstance(expected, type) and issubclass(expected, Spelled):
        # Parsed here, once: the rest of the reference reads the parts.
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        try:
            return expected(value)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None
    if isinstance(expected, UnionType) and NoneType in get_args(expected):
        # Optional: TOML has no null, so the empty string says "none".
        if value == "":
            return None
        (inner,) = (t for t in get_args(expected) if t is not NoneType)
        return _check_type(key, value, inner)
    if get_origin(expected) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"expected a list of strings, got {value!r}")
        (item,) = get_args(expected)
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    raise ConfigError(key, f"unsupported type {expected}")  # pragma: no cover


def _validate(cfg: Config) -> None:
    if not 1 <= cfg.relay.port <= 65535:
        raise ConfigError("relay.port", f"port {cfg.relay.port} out of range 1-65535")
    if cfg.addresses.delimiter not in ("", "+", "-", "_", "=", "#"):
        raise ConfigError(
            "addresses.delimiter", f"one of + - _ = # or empty, not {cfg.addresses.delimiter!r}"
        )
    if cfg.srs.max_age < 86400:
        raise ConfigError("srs.max_age", "at least one day (SRS time stamps count days)")
    if cfg.state.url and not re.match(r"^rediss?://", cfg.state.url):
        raise ConfigError("state.url", "empty (SQLite) or a redis:// URL")
    if cfg.directory.url and not re.match(
        r"^(sqlite|mysql|mariadb|postgresql)(\+\w+)?://", cfg.directory.url
    ):
        raise ConfigError(
            "directory.url",
            "empty (SQLite under data_dir), or a sqlite://, mysql:// or postgresql:// URL",
        )
    if cfg.relay.reputation_retries < 1:
        raise ConfigError("relay.reputation_retries", "must be at least 1")
    if cfg.smtp.max_backlog < 0:
        raise ConfigError("smtp.max_backlog", "0 (no limit) or more")
    if cfg.smtp.flow_backlog < 0:
        raise ConfigError("smtp.flow_backlog", "0 (never wait) or more")
    if cfg.server.workers < 0:
        raise ConfigError("server.workers", "0 (one per core) or more")
    for key in ("max_connections", "max_connections_per_client"):
        if getattr(cfg.smtp, key) < 1:
            raise ConfigError(f"smtp.{key}", "must be at least 1")
    if cfg.smtp.max_recipients < 100:
        raise ConfigError("smtp.max_recipients", "RFC 5321 4.5.3.1.8 requires at least 100")
    if cfg.smtp.max_message_size < 1024:
        raise ConfigError("smtp.max_message_size", "must be at least 1024 bytes")
    if bool(cfg.tls.cert) != bool(cfg.tls.key):
        raise ConfigError(
            "tls.cert" if not cfg.tls.cert else "tls.key", "tls.cert and tls.key go together"
        )
    for key in ("quota_bytes", "quota_messages"):
        if getattr(cfg.mailbox, key) < 0:
            raise ConfigError(f"mailbox.{key}", "must be 0 (unlimited) or more")
    if not cfg.server.roles:
        raise ConfigError("server.roles", f"name at least one of {', '.join(ROLES)}")
    for i, role in enumerate(cfg.server.roles):
        if role not in ROLES:
            raise ConfigError(f"server.roles[{i}]", f"one of {', '.join(ROLES)}, not {role!r}")
    if cfg.server.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", "one of debug, info, warning, error")
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", cfg.server.hostname):
        raise ConfigError("server.hostname", f"not a host name: {cfg.server.hostname!r}")
    _validate_auth(cfg.auth)
    _validate_dmarc(cfg.dmarc)
    _validate_spam(cfg.spam)
    _validate_outbound(cfg)


def helo_names(names: list[HeloName]) -> dict[str, str]:
    """The EHLO name per source address (``relay.helo_names``)."""
    return {h.address: h.name for h in names}


def _validate_outbound(cfg: Config) -> None:
    for key in ("concurrency", "bulk_concurrency"):
        if getattr(cfg.queue, key) < 1:
            raise ConfigError(f"queue.{key}", "must be at least 1")
    if cfg.queue.bulk_recipients < 0:
        raise ConfigError("queue.bulk_recipients", "must be 0 (never by count) or more")
    sub = cfg.submission
    for key in ("auth_max_failures", "auth_max_failures_per_client"):
        if getattr(sub, key) < 1:
            raise ConfigError(f"submission.{key}", "must be at least 1")
    if sub.auth_delay_after < 0:
        raise ConfigError("submission.auth_delay_after", "must be 0 or more")


def _validate_spam(spam: Spam) -> None:
    if spam.reject_score <= 0:
        raise ConfigError("spam.reject_score", "must be more than 0")
    if not 0 < spam.junk_score <= spam.reject_score:
        raise ConfigError("spam.junk_score", "must be more than 0 and at most spam.reject_score")
    if spam.bayes_min < 1:
        raise ConfigError("spam.bayes_min", "must be at least 1")
    if spam.bayes_user_min < 1:
        raise ConfigError("spam.bayes_user_min", "must be at least 1")
    if spam.macro_score < 0:
        raise ConfigError("spam.macro_score", "must be 0 (no macro check) or more")
    if spam.macro_max_size < 1024:
        raise ConfigError("spam.macro_max_size", "must be at least 1024 bytes")


def _validate_dmarc(dmarc: Dmarc) -> None:
    if dmarc.report_interval < 60:
        raise ConfigError("dmarc.report_interval", "must be at least 1m")
    if dmarc.report_from and not re.fullmatch(r"[^@\s<>]+@[A-Za-z0-9.-]+", dmarc.report_from):
        raise ConfigError("dmarc.report_from", f"not an address: {dmarc.report_from!r}")


def _validate_auth(auth: Auth) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,40}[A-Za-z0-9])?", auth.selector):
        raise ConfigError("auth.selector", f"letters, digits and hyphens, not {auth.selector!r}")
    known = ("rsa-sha256", "ed25519-sha256")
    if not auth.sign_algorithms:
        raise ConfigError("auth.sign_algorithms", "name at least one algorithm")
    for i, alg in enumerate(auth.sign_algorithms):
        if alg not in known:
            raise ConfigError(f"auth.sign_algorithms[{i}]", f"one of {', '.join(known)}")
    for i, d in enumerate(auth.arc_trusted):
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", d) or "." not in d:
            raise ConfigError(f"auth.arc_trusted[{i}]", f"not a domain: {d!r}")


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from parsed TOML; unknown keys are errors."""
    sections = _sections()
    kwargs: dict[str, Any] = {}
    for sname, svalue in data.items():
        if sname not in sections:
            raise ConfigError(sname, f"unknown section (known: {', '.join(sections)})")
        if not isinstance(svalue, dict):
            raise ConfigError(sname, "expected a table")
        cls = sections[sname]
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        skw: dict[str, Any] = {}
        for k, v in svalue.items():
            key = f"{sname}.{k}"
            if k not in known:
                raise ConfigError(
                    key, f"unknown key (known in [{sname}]: {', '.join(sorted(known))})"
                )
            skw[k] = _check_type(key, v, hints[k])
        kwargs[sname] = cls(**skw)
    cfg = Config(**kwargs)
    _validate(cfg)
    return cfg


def load(
    path: Path | None = None,
    *,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read ``path`` (or the embedded defaults), apply dotted ``overrides``, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("--config", f"{path}: not valid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = value
    if data_dir is not None:
        data.setdefault("server", {})["data_dir"] = data_dir
    return from_dict(data)


def _toml_value(v: Any) -> str:
    if v is None:
        return '""'  # an optional value left out
    if isinstance(v, Duration):
        return _toml_value(v.text)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(cfg: Config, *, with_docs: bool = True) -> str:
    """The effective config as TOML (what `mailspec config show` prints)."""
    out: list[str] = []
    for sec in fields(cfg):
        section = getattr(cfg, sec.name)
        out.append(f"[{sec.name}]")
        for f in fields(section):
            if with_docs:
                out.append(f"# {f.metadata['doc']}")
            out.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        out.append("")
    return "\n".join(out)


def as_dict(cfg: Config) -> dict[str, Any]:
    """The config as TOML would hold it (durations as written), for ``from_dict``."""

    def plain(v: Any) -> Any:
        if isinstance(v, Duration):
            return v.text
        if v is None:
            return ""
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}
