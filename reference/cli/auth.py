"""`mailspec dkim keygen`, `dns records`, `auth check|spf|dkim|dmarc` and `dmarc …` (reports
received, evaluations pending, reports sent, sending them now)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reference.auth import arc, dkim, dmarc, spf
from reference.auth.keys import ALGORITHMS
from reference.auth.lookup import Lookup
from reference.auth.reports import SentReport
from reference.auth.results import authentication_results
from reference.cli.common import admin, leaf, load_config
from reference.clock import RealClock
from reference.config import Config, ConfigError
from reference.mail.message import from_domains, split_message
from reference.service import ServiceError


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    """Add the dkim, dns and auth subcommands to the mailspec command line."""
    p = sub.add_parser("dkim", parents=parents, help="DKIM keys")
    dsub = p.add_subparsers(dest="dkim_cmd", required=True)
    k = dsub.add_parser(
        "keygen", parents=parents, help="make a domain's DKIM keys and print the DNS records"
    )
    k.add_argument("domain", help="the domain the keys sign for")
    k.add_argument("--selector", help="selector (default: auth.selector, 'mailspec')")
    k.add_argument(
        "--algorithm",
        action="append",
        choices=list(ALGORITHMS),
        help="rsa-sha256 and/or ed25519-sha256 (default: auth.sign_algorithms)",
    )
    k.add_argument("--replace", action="store_true", help="make new keys even if some exist")
    k.set_defaults(func=cmd_keygen)

    p = sub.add_parser("dns", parents=parents, help="DNS records")
    nsub = p.add_subparsers(dest="dns_cmd", required=True)
    r = nsub.add_parser(
        "records", parents=parents, help="every DNS record a domain needs (zone-file lines)"
    )
    r.add_argument("domain", help="one of our domains")
    r.set_defaults(func=cmd_records)

    p = sub.add_parser("auth", parents=parents, help="sender authentication diagnostics")
    asub = p.add_subparsers(dest="auth_cmd", required=True)
    c = asub.add_parser(
        "check", parents=parents, help="SPF, DKIM, ARC and DMARC results for a message file"
    )
    c.add_argument("file", type=Path, help="the message (RFC 5322, e.g. a .eml file)")
    c.add_argument("--client-ip", help="the sending client's address (for SPF)")
    c.add_argument("--helo", default="", help="the client's EHLO name")
    c.add_argument("--mail-from", default=None, help="the envelope sender ('' for <>)")
    c.add_argument("--nameserver", help="HOST:PORT to resolve with (default: dns.nameservers)")
    c.set_defaults(func=cmd_check)

    def diagnostic(name: str, help: str, *, file: bool) -> argparse.ArgumentParser:
        d = asub.add_parser(name, parents=parents, help=help)
        if file:
            d.add_argument("file", type=Path, help="the message (RFC 5322, e.g. a .eml file)")
        d.add_argument("--nameserver", help="HOST:PORT to resolve with (default: dns.nameservers)")
        d.add_argument("--json", action="store_true", help="print the results as JSON")
        return d

    d = diagnostic("spf", "the SPF results (RFC 7208) for a client, HELO and sender", file=False)
    d.add_argument("--ip", required=True, help="the client's address")
    d.add_argument("--helo", default="", help="the client's EHLO name")
    d.add_argument("--mail-from", default="", help="the envelope sender ('' for <>)")
    d.set_defaults(func=cmd_spf)
    d = diagnostic("dkim", "verify every DKIM signature of a message (RFC 6376)", file=True)
    d.set_defaults(func=cmd_dkim)
    d = diagnostic(
        "dmarc", "DMARC (RFC 7489) for a message, and what the MX would do with it", file=True
    )
    d.add_argument("--ip", required=True, help="the client's address")
    d.add_argument("--mail-from", required=True, help="the envelope sender ('' for <>)")
    d.add_argument("--helo", default="", help="the client's EHLO name")
    d.set_defaults(func=cmd_dmarc)

    p = sub.add_parser("dmarc", parents=parents, help="DMARC aggregate reports")
    msub = p.add_subparsers(dest="dmarc_cmd", required=True)
    r = msub.add_parser(
        "reports", parents=parents, help="aggregate reports received about a domain"
    )
    r.add_argument("domain", help="one of our domains")
    r.add_argument("--json", action="store_true", help="print the reports as JSON")
    r.set_defaults(func=cmd_reports)
    r = msub.add_parser(
        "pending", parents=parents, help="evaluations recorded and not yet reported, per domain"
    )
    r.set_defaults(func=cmd_pending)
    r = leaf(
        msub, "sent", parents, "aggregate reports we sent, newest first, and where to", cmd_sent
    )
    r.add_argument("--domain", help="reports about this domain (and its subdomains) only")
    r.add_argument("--json", action="store_true", help="print the reports as JSON")
    flush = "close the reporting period now and queue its reports (not waiting for "
    leaf(msub, "flush", parents, flush + "dmarc.report_interval)", cmd_flush)


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
        with admin(args) as a:
            keys, made = a.dkim_keys(
                args.domain, selector=args.selector, algorithms=args.algorithm, replace=args.replace
            )
            records = a.dkim_records(keys)
    except (ConfigError, ServiceError) as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    where = cfg.data_path / "dkim" / keys[0].domain
    verb = "made" if made else "kept the existing"
    print(f"; DKIM keys {verb} in {where}; publish these records:")
    for record in records:
        print(record.zone_line)
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
        with admin(args) as a:
            _, made = a.dkim_keys(args.domain)
            records = a.dns_records(args.domain)
    except (ConfigError, ServiceError) as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    if made:
        print(f"mailspec: made DKIM keys under {cfg.data_path / 'dkim'}", file=sys.stderr)
    lines: list[str] = []
    for i, record in enumerate(records):
        if i == 0 or record.purpose != records[i - 1].purpose:
            lines.append(f"; {record.purpose}")
        lines.append(record.zone_line)
    print("\n".join(lines))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.nameserver:
        overrides["dns.nameservers"] = [args.nameserver]
    try:
        cfg = load_config(args, overrides)
        msg = args.file.read_bytes()
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mailspec: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    from reference.dns import make_resolver

    lookup = Lookup(make_resolver(cfg))
    print(asyncio.run(_check(lookup, msg, args, cfg.server.hostname)), end="")
    return 0


async def _check(lookup: Lookup, msg: bytes, args: argparse.Namespace, authserv_id: str) -> str:
    now = RealClock().now()
    out: list[str] = []
    spf_checks: list[spf.SpfCheck] = []
    if args.client_ip:
        sender = args.mail_from or ""
        mf = await spf.check_mail_from(lookup, args.client_ip, sender, args.helo, now=now)
        spf_checks.append(mf)
        if mf.identity != "helo" and args.helo:
            spf_checks.append(await spf.check_helo(lookup, args.client_ip, args.helo, now=now))
        for c in spf_checks:
            expl = f" explanation={c.explanation!r}" if c.explanation else ""
            out.append(f"spf={c.result} {c.identity}={c.sender} ({c.reason}){expl}")
    else:
        out.append("spf: skipped (no --client-ip)")
    sigs = await dkim.verify(lookup, msg, now=now)
    for s in sigs:
        out.append(f"dkim={s.result} d={s.domain} s={s.selector} a={s.algorithm} ({s.reason})")
    if not sigs:
        out.append("dkim=none (no signature)")
    chain = await arc.verify(lookup, msg)
    out.append(f"arc={chain.result} instances={chain.instances} ({chain.reason})")
    header, _ = split_message(msg)
    evaluations = []
    for domain in from_domains(header):
        ev = await dmarc.evaluate(lookup, domain, spf_checks[0] if spf_checks else None, sigs)
        evaluations.append((ev, ev.disposition.value))
        out.append(
            f"dmarc={ev.result} header.from={domain} policy={ev.policy} "
            f"disposition={ev.disposition} ({ev.reason})"
        )
    ar = authentication_results(
        authserv_id,
        spf=spf_checks,
        dkim=sigs,
        dmarc=evaluations,
        arc=chain,
        remote_ip=args.client_ip or "",
    )
    out.append(ar.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n"))
    return "\n".join(out) + "\n"


# -- diagnostics: auth spf | dkim | dmarc ------------------------------------------------------


def _lookup(args: argparse.Namespace) -> tuple[Config, Lookup] | None:
    overrides: dict[str, object] = {}
    if args.nameserver:
        overrides["dns.nameservers"] = [args.nameserver]
    try:
        cfg = load_config(args, overrides)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return None
    from reference.dns import make_resolver

    return cfg, Lookup(make_resolver(cfg))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as e:
        print(f"mailspec: cannot read {path}: {e.strerror}", file=sys.stderr)
        return None


def _ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        print(f"mailspec: --ip: not an IP address: {text!r}", file=sys.stderr)
        return False
    return True


def _ar_text(field: bytes) -> str:
    return field.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")


def _spf_json(c: spf.SpfCheck) -> dict[str, Any]:
    return {k: str(v) for k, v in asdict(c).items()}


def _spf_line(c: spf.SpfCheck) -> str:
    expl = f" explanation={c.explanation!r}" if c.explanation else ""
    return f"spf={c.result} {c.identity}={c.sender} ({c.reason}){expl}"


def _dkim_json(sig: dkim.DkimSignature) -> dict[str, Any]:
    return {k: str(v) for k, v in asdict(sig).items()}


def _dkim_line(sig: dkim.DkimSignature) -> str:
    why = f" ({sig.reason})" if sig.reason else ""
    return f"dkim={sig.result} d={sig.domain} s={sig.selector} a={sig.algorithm}{why}"


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print("\n".join(lines))


async def _spf_checks(lookup: Lookup, ip: str, helo: str, sender: str) -> list[spf.SpfCheck]:
    """As the MX runs them: the MAIL FROM identity, and HELO's unless it is the same."""
    now = RealClock().now()
    mail_from = await spf.check_mail_from(lookup, ip, sender, helo, now=now)
    if mail_from.identity == "helo" or not helo:
        return [mail_from]
    return [mail_from, await spf.check_helo(lookup, ip, helo, now=now)]


def cmd_spf(args: argparse.Namespace) -> int:
    got = _lookup(args)
    if got is None or not _ip(args.ip):
        return 2
    cfg, lookup = got
    checks = asyncio.run(_spf_checks(lookup, args.ip, args.helo, args.mail_from))
    ar = _ar_text(authentication_results(cfg.server.hostname, spf=checks))
    _emit(
        args,
        {"spf": [_spf_json(c) for c in checks], "authentication_results": ar},
        [*(_spf_line(c) for c in checks), ar],
    )
    return 0


def cmd_dkim(args: argparse.Namespace) -> int:
    got = _lookup(args)
    msg = _read(args.file)
    if got is None or msg is None:
        return 2
    cfg, lookup = got
    sigs = asyncio.run(dkim.verify(lookup, msg, now=RealClock().now()))
    ar = _ar_text(authentication_results(cfg.server.hostname, dkim=sigs))
    lines = [_dkim_line(s) for s in sigs] or ["dkim=none (no signature)"]
    _emit(args, {"dkim": [_dkim_json(s) for s in sigs], "authentication_results": ar}, [*lines, ar])
    return 0


def cmd_dmarc(args: argparse.Namespace) -> int:
    got = _lookup(args)
    msg = _read(args.file)
    if got is None or msg is None or not _ip(args.ip):
        return 2
    cfg, lookup = got
    data, lines = asyncio.run(_dmarc_verdict(cfg, lookup, msg, args))
    _emit(args, data, lines)
    return 0


async def _dmarc_verdict(
    cfg: Config, lookup: Lookup, msg: bytes, args: argparse.Namespace
) -> tuple[dict[str, Any], list[str]]:
    """Run the MX's own check on the message, so the verdict is exactly the server's."""
    from reference.assembly import sender_authentication
    from reference.auth.dmarc import MemoryRecorder
    from reference.mail.message import Message
    from reference.policy import Action, Session, Transaction

    recorder = MemoryRecorder()
    check = sender_authentication(cfg, lookup, RealClock(), recorder)
    sender = args.mail_from
    tx = Transaction(Session(role="mx", peer=args.ip, helo=args.helo), sender)
    await check.mail(tx)
    tx.message = Message(msg)
    result = await check.data(tx)
    checks = await _spf_checks(lookup, args.ip, args.helo, sender)
    sigs = await dkim.verify(lookup, msg, now=RealClock().now())
    chain = await arc.verify(lookup, msg)
    observed = list(recorder.observations)
    if result.prepend_headers:
        ar = _ar_text(result.prepend_headers)
    else:
        # Refused: nothing is added; show the field the results would have made.
        ar = _ar_text(
            authentication_results(
                cfg.server.hostname,
                spf=checks,
                dkim=sigs,
                dmarc=[(o.evaluation, o.applied.value) for o in observed],
                arc=chain,
                remote_ip=args.ip,
            )
        )
    if result.action is Action.TEMPFAIL or result.action is Action.REJECT:
        action = result.action.value
    else:
        action = "junk" if result.filing.folder == "Junk" else "accept"
    reply = str(result.reply) if result.reply is not None else ""
    evaluations: list[dict[str, Any]] = [
        {
            "header_from": o.evaluation.from_domain,
            "result": o.evaluation.result.value,
            "policy_domain": o.evaluation.policy_domain,
            "record": o.evaluation.record.raw if o.evaluation.record else "",
            "policy": o.evaluation.policy.value,
            "requested": o.evaluation.disposition.value,
            "applied": o.applied.value,
            "overrides": list(o.overrides),
            "spf_aligned": o.evaluation.spf_aligned,
            "dkim_aligned": o.evaluation.dkim_aligned,
            "reason": o.evaluation.reason,
        }
        for o in observed
    ]
    data = {
        "spf": [_spf_json(c) for c in checks],
        "dkim": [_dkim_json(s) for s in sigs],
        "arc": {"result": chain.result.value, "instances": chain.instances, "reason": chain.reason},
        "dmarc": evaluations,
        "action": action,
        "reply": reply,
        "authentication_results": ar,
        "authentication_results_added": bool(result.prepend_headers),
    }
    lines = [_spf_line(c) for c in checks]
    lines += [_dkim_line(s) for s in sigs] or ["dkim=none (no signature)"]
    lines.append(f"arc={chain.result} instances={chain.instances} ({chain.reason})")
    for e in evaluations:
        aligned = [k for k in ("spf", "dkim") if e[f"{k}_aligned"]]
        lines.append(
            f"dmarc={e['result']} header.from={e['header_from']} policy={e['policy']} "
            f"requested={e['requested']} applied={e['applied']} "
            f"aligned={','.join(aligned) or 'none'} ({e['reason']})"
            + (f" overrides={','.join(e['overrides'])}" if e["overrides"] else "")
        )
    if not evaluations:
        lines.append("dmarc=none (no From domain)")
    lines.append(f"action: {action}" + (f" ({reply})" if reply else ""))
    if not result.prepend_headers:
        lines.append("(refused: no field is added; it would have read)")
    lines.append(ar)
    return data, lines


# -- mailspec dmarc reports | pending ------------------------------------------------------------


def _when(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def cmd_reports(args: argparse.Namespace) -> int:
    with admin(args) as a:
        reports = a.dmarc_reports(args.domain)
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2, sort_keys=True))
        return 0
    if not reports:
        print(f"no DMARC aggregate reports received about {args.domain}")
        return 0
    head = ("reporter", "period (UTC)", "source", "count", "disposition", "dkim", "spf", "from")
    table: list[tuple[str, ...]] = [head]
    for fb in reports:
        period = f"{_when(fb.begin)} - {_when(fb.end)}"
        for row in fb.rows:
            dkim_detail = ",".join(f"{d.domain}:{d.result}" for d in row.dkim_results)
            spf_detail = ",".join(f"{s.domain}:{s.result}" for s in row.spf_results)
            table.append(
                (
                    fb.org_name,
                    period,
                    row.source_ip,
                    str(row.count),
                    row.disposition,
                    row.dkim + (f" ({dkim_detail})" if dkim_detail else ""),
                    row.spf + (f" ({spf_detail})" if spf_detail else ""),
                    row.header_from,
                )
            )
        if not fb.rows:
            table.append((fb.org_name, period, "-", "0", "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    total = sum(fb.messages for fb in reports)
    passed = sum(row.count for fb in reports for row in fb.rows if row.aligned)
    print(f"{len(reports)} report(s), {total} message(s), {passed} with aligned SPF or DKIM")
    return 0


def cmd_pending(args: argparse.Namespace) -> int:
    with admin(args) as a:
        pending = a.dmarc_pending()
    if not pending:
        print("no evaluations waiting to be reported")
    for domain, count in pending:
        print(f"{domain}\t{count}")
    return 0


def _destinations(report: SentReport) -> str:
    return ", ".join(
        d.rua + (f" ({d.qid})" if d.qid else f" (not sent: {d.skipped})")
        for d in report.destinations
    )


def cmd_sent(args: argparse.Namespace) -> int:
    try:
        with admin(args) as a:
            reports = a.dmarc_sent([args.domain] if args.domain else None)
    except ServiceError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2, sort_keys=True))
        return 0
    if not reports:
        print("no DMARC aggregate reports sent" + (f" about {args.domain}" if args.domain else ""))
        return 0
    head = ("domain", "period (UTC)", "messages", "pass", "fail", "rua")
    table: list[tuple[str, ...]] = [head]
    for r in reports:
        period = f"{_when(r.begin)} - {_when(r.end)}"
        row = (r.policy_domain, period, str(r.messages), str(r.passed), str(r.failed))
        table.append((*row, _destinations(r)))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    from reference.app import aggregate_reporter
    from reference.auth.reports import DmarcStore
    from reference.cli.common import poke_server
    from reference.dns import make_resolver
    from reference.spool import Spool

    try:
        cfg = load_config(args)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    if not cfg.dmarc.reports:
        print("mailspec: dmarc.reports is off: no reports are sent", file=sys.stderr)
        return 2
    clock = RealClock()
    store = DmarcStore(cfg.data_path / "dmarc.sqlite3")
    try:
        spool = Spool(cfg.spool_path, clock)
        reporter = aggregate_reporter(cfg, store, spool, clock, make_resolver(cfg))
        reports = asyncio.run(reporter.send_due(now=True))
    finally:
        store.close()
    for r in reports:
        print(f"{r.policy_domain}: {r.messages} message(s) -> {_destinations(r)}")
    queued = sum(1 for r in reports for d in r.destinations if d.qid)
    print(
        f"{len(reports)} report(s), {queued} queued " + (f"({poke_server(cfg)})" if queued else "")
    )
    return 0
