"""`mailspec dkim keygen`, `mailspec dns records` and `mailspec auth check`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from reference import config as config_mod
from reference.auth import arc, dkim, dmarc, spf
from reference.auth.keys import ALGORITHMS, KeyStore, KeyStoreError, SigningKey, txt_strings
from reference.auth.lookup import Lookup
from reference.auth.message import from_domains, split_message
from reference.auth.results import authentication_results
from reference.clock import RealClock
from reference.config import Config, ConfigError


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    """Add the dkim, dns and auth subcommands to the mailspec command line."""
    p = sub.add_parser("dkim", help="DKIM keys")
    dsub = p.add_subparsers(dest="dkim_cmd", required=True)
    k = dsub.add_parser(
        "keygen", parents=parents, help="make a domain's DKIM keys and print the DNS records"
    )
    k.add_argument("domain")
    k.add_argument("--selector", help="selector (default: auth.selector, 'mailspec')")
    k.add_argument(
        "--algorithm",
        action="append",
        choices=list(ALGORITHMS),
        help="rsa-sha256 and/or ed25519-sha256 (default: auth.sign_algorithms)",
    )
    k.add_argument("--replace", action="store_true", help="make new keys even if some exist")
    k.set_defaults(func=cmd_keygen)

    p = sub.add_parser("dns", help="DNS records")
    nsub = p.add_subparsers(dest="dns_cmd", required=True)
    r = nsub.add_parser(
        "records", parents=parents, help="every DNS record a domain needs (zone-file lines)"
    )
    r.add_argument("domain")
    r.set_defaults(func=cmd_records)

    p = sub.add_parser("auth", help="sender authentication diagnostics")
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


def _config(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Config:
    return config_mod.load(
        getattr(args, "config", None), data_dir=getattr(args, "data_dir", None), overrides=overrides
    )


def _zone_lines(name: str, rtype: str, value: str) -> str:
    owner = name.rstrip(".") + "."
    if rtype != "TXT":
        return f"{owner}\t3600\tIN\t{rtype}\t{value}"
    quoted = " ".join('"' + s.replace('"', '\\"') + '"' for s in txt_strings(value))
    return f"{owner}\t3600\tIN\tTXT\t{quoted}"


def _keys(
    cfg: Config, domain: str, selector: str | None, algs: list[str] | None, replace: bool = False
) -> tuple[list[SigningKey], bool]:
    store = KeyStore(cfg.data_path / "dkim")
    sel = selector or cfg.auth.selector
    algorithms = tuple(algs or cfg.auth.sign_algorithms)
    have = store.load(domain, sel, algorithms)
    if len(have) == len(algorithms) and not replace:
        return have, False
    return store.generate(domain, sel, algorithms, replace=replace), True


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args)
        keys, made = _keys(cfg, args.domain, args.selector, args.algorithm, args.replace)
    except (ConfigError, KeyStoreError) as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    where = cfg.data_path / "dkim" / keys[0].domain
    verb = "made" if made else "kept the existing"
    print(f"; DKIM keys {verb} in {where}; publish these records:")
    for key in keys:
        print(_zone_lines(key.record_name, "TXT", key.public_record()))
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args)
        keys, made = _keys(cfg, args.domain, None, None)
    except (ConfigError, KeyStoreError) as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    if made:
        print(f"mailspec: made DKIM keys under {cfg.data_path / 'dkim'}", file=sys.stderr)
    domain = keys[0].domain
    host = cfg.server.hostname
    sources = " ".join(f"{'ip6' if ':' in a else 'ip4'}:{a}" for a in cfg.relay.source_addresses)
    spf_value = " ".join(x for x in ("v=spf1 mx", sources, "-all") if x)
    sts_id = time.strftime("%Y%m%d%H%M%S", time.gmtime(RealClock().now()))
    lines = [
        f"; {domain}: mail for it goes to {host}",
        _zone_lines(domain, "MX", f"10 {host}."),
        "; SPF (RFC 7208): who may send as the domain",
        _zone_lines(domain, "TXT", spf_value),
        "; DKIM (RFC 6376, RFC 8463): the signing keys",
        *(_zone_lines(k.record_name, "TXT", k.public_record()) for k in keys),
        "; DMARC (RFC 7489): what receivers do with unauthenticated mail",
        _zone_lines(
            f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=reject; rua=mailto:postmaster@{domain}"
        ),
        f"; MTA-STS (RFC 8461): also serve https://mta-sts.{domain}/.well-known/mta-sts.txt with",
        f";   version: STSv1 / mode: enforce / mx: {host} / max_age: 604800",
        _zone_lines(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={sts_id}"),
        "; TLS-RPT (RFC 8460): where TLS failure reports go",
        _zone_lines(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
    ]
    print("\n".join(lines))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.nameserver:
        overrides["dns.nameservers"] = [args.nameserver]
    try:
        cfg = _config(args, overrides)
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
