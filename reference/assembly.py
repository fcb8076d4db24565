"""The check chain, assembled from the configuration in one place: the server's, and the
checks the diagnostics commands (`mailspec auth dmarc`, `mailspec spam check`) run, so a
diagnosis judges a message exactly as the MX would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver

from reference.auth.dmarc import DmarcRecorder
from reference.auth.keys import KeyStore
from reference.auth.lookup import Lookup
from reference.auth.srs import Srs
from reference.clock import Clock
from reference.config import Config
from reference.directory import Directory
from reference.mailbox import MailStore
from reference.policy import Check, LocalRecipients, SenderOwnership
from reference.policy.access import AccessLists
from reference.policy.antivirus import Antivirus, Unscanned
from reference.policy.auth import DkimSigning, SenderAuthentication
from reference.policy.backpressure import Backpressure
from reference.policy.cos import ClassOfServiceCheck
from reference.policy.disclaimer import DisclaimerCheck, DisclaimerStore
from reference.policy.dnsbl import BlocklistZone, Dnsbl
from reference.policy.greylist import Greylist
from reference.policy.helo import HeloCheck
from reference.policy.lists import ListPosting
from reference.policy.quota import MailboxQuota
from reference.policy.ratelimit import RateLimit
from reference.policy.sieve import SieveVerdict
from reference.policy.spam import BlockedSenders, SpamCheck
from reference.policy.submission import BulkLane, FromOwnership, HeaderRules
from reference.scan.bayes import Classifiers
from reference.scan.clamd import ClamdClient
from reference.scan.spam import UriZone
from reference.sieve import Limits as SieveLimits
from reference.sieve import ScriptStore
from reference.spool import Spool
from reference.state import StateStore
from reference.values import Limits

__all__ = ["Parts", "check_chain", "dnsbl", "sender_authentication", "spam_check"]


@dataclass(frozen=True)
class Parts:
    """What the checks stand on, built by the composition root."""

    clock: Clock
    resolver: dns.asyncresolver.Resolver
    directory: Directory
    store: MailStore
    spool: Spool
    state: StateStore
    bayes: Classifiers | None
    dmarc_recorder: DmarcRecorder
    srs: Srs | None = None  # checks bounces to rewritten return paths at RCPT
    scripts: ScriptStore | None = None  # users' Sieve scripts: a reject known at DATA


def dnsbl(
    cfg: Config, resolver: dns.asyncresolver.Resolver, clock: Clock | None = None
) -> Dnsbl | None:
    """The client blocklists (RCPT), or None when no zone is configured."""
    if not cfg.dnsbl.zones:
        return None
    zones = [BlocklistZone(z.zone, z.weights) for z in cfg.dnsbl.zones]
    return Dnsbl(resolver, zones, reject_at=cfg.dnsbl.reject_score, clock=clock)


def sender_authentication(
    cfg: Config, lookup: Lookup, clock: Clock, recorder: DmarcRecorder | None
) -> SenderAuthentication:
    """The MX's SPF, DKIM, ARC and DMARC check with the [auth] settings."""
    a = cfg.auth
    return SenderAuthentication(
        lookup,
        clock,
        authserv_id=cfg.server.hostname,
        dmarc_reject=a.dmarc_reject,
        dmarc_quarantine=a.dmarc_quarantine,
        dmarc_tempfail=a.dmarc_tempfail,
        arc_trusted=a.arc_trusted,
        recorder=recorder,
        report_address=cfg.dmarc_report_from,
    )


def spam_check(
    cfg: Config,
    *,
    resolver: dns.asyncresolver.Resolver | None,
    dnsbl: Dnsbl | None,
    bayes: Classifiers | None,
    directory: Directory | None,
    clock: Clock | None = None,
) -> SpamCheck:
    """The content scoring with the [spam] settings."""
    sp = cfg.spam
    return SpamCheck(
        reject_score=sp.reject_score,
        junk_score=sp.junk_score,
        resolver=resolver,
        uribl=[UriZone(z.zone, z.weights) for z in sp.uribl_zones],
        dnsbl=dnsbl,  # the client's lighter listings count as spam score
        bayes=bayes,
        directory=directory,  # thresholds and sender lists per recipient
        macro_score=sp.macro_score,
        macro_max_size=sp.macro_max_size,
        clock=clock,  # URIBL answers kept for their TTL on it
    )


def check_chain(cfg: Config, parts: Parts) -> list[Check]:
    """The server's checks, in stage order; which checks run is configuration."""
    p = parts
    checks: list[Check] = [
        Backpressure(p.spool, cfg.smtp.max_backlog),
        HeloCheck(cfg.server.hostname),
        AccessLists(p.directory),
        SenderOwnership(p.directory),
        FromOwnership(p.directory),
        LocalRecipients(p.directory, cfg.server.hostname, srs=p.srs, clock=p.clock),
        ListPosting(p.directory),
        MailboxQuota(p.directory, p.store),
        ClassOfServiceCheck(p.directory),
    ]
    if cfg.spam.enabled:
        # A recipient's blocked senders are refused before greylisting delays them.
        checks.append(BlockedSenders(p.directory))
    blocklists = dnsbl(cfg, p.resolver, p.clock)
    if blocklists is not None:
        checks.append(blocklists)
    if cfg.antivirus.clamd:
        clamd = ClamdClient(
            cfg.antivirus.clamd,
            timeout=cfg.antivirus.timeout,
            max_size=cfg.smtp.max_message_size + 65536,
        )
        checks.append(Antivirus(clamd, fail_open=cfg.antivirus.fail_open))
    else:
        checks.append(Unscanned())
    rl = cfg.ratelimit
    checks.append(
        RateLimit(
            p.state,
            p.clock,
            Limits(rl.recipients.limit, rl.messages.limit, rl.bytes.limit),
            {o.who: o.limits for o in rl.overrides},
            classes=p.directory.effective_cos,
        )
    )
    if cfg.greylist.enabled:
        checks.append(
            Greylist(
                p.state,
                p.clock,
                delay=cfg.greylist.delay,
                window=cfg.greylist.window,
                whitelist=cfg.greylist.whitelist,
                bypass=cfg.greylist.bypass_networks,
                # Sender authentication starts SPF at MAIL: the transaction carries its
                # result to greylisting at RCPT.
                spf_domains=cfg.greylist.bypass_spf_domains,
            )
        )
    if cfg.spam.enabled:
        checks.append(
            spam_check(
                cfg,
                resolver=p.resolver,
                dnsbl=blocklists,
                bayes=p.bayes,
                directory=p.directory,
                clock=p.clock,
            )
        )
    if cfg.auth.verify:
        checks.append(
            sender_authentication(cfg, Lookup(p.resolver, p.clock), p.clock, p.dmarc_recorder)
        )
    if p.scripts is not None and cfg.sieve.enabled:
        # Last of the inbound judgements: a message the platform would refuse anyway is
        # refused for its own reason, not the user's.
        checks.append(
            SieveVerdict(
                p.directory,
                p.scripts,
                p.clock,
                limits=SieveLimits(
                    max_steps=cfg.sieve.max_steps, max_redirects=cfg.sieve.max_redirects
                ),
                subaddress_delimiter=cfg.addresses.delimiter,
            )
        )
    # Submitted mail is rewritten (header rules, the domain's disclaimer) before it is
    # signed; the lane only files it.
    checks.append(HeaderRules(cfg.headers.remove, cfg.headers.add))
    if cfg.disclaimer.enabled:
        where = Path(cfg.disclaimer.dir) if cfg.disclaimer.dir else cfg.data_path / "disclaimers"
        checks.append(DisclaimerCheck(DisclaimerStore(where), p.directory))
    checks.append(BulkLane(p.directory, recipients=cfg.queue.bulk_recipients))
    if cfg.auth.sign:
        # DKIM signing stays last: nothing may change a message once it is signed.
        checks.append(
            DkimSigning(
                KeyStore(cfg.data_path / "dkim"),
                p.directory,
                p.clock,
                selector=cfg.auth.selector,
                algorithms=cfg.auth.sign_algorithms,
            )
        )
    return checks
