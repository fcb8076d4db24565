"""`mailspec spam train`, `mailspec spam check` and `mailspec spam stats`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from reference import config as config_mod
from reference.config import Config, ConfigError, parse_dnsbl

if TYPE_CHECKING:
    from reference.scan.bayes import Bayes

MAX_FILE = 32 << 20  # bytes read from one message file


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    """Add the spam subcommands to the mailspec command line."""
    p = sub.add_parser("spam", help="spam filter: Bayes training and diagnostics")
    ssub = p.add_subparsers(dest="spam_cmd", required=True)
    t = ssub.add_parser(
        "train",
        parents=parents,
        help="teach Bayes from messages: Maildirs, directories of .eml files, or files",
    )
    t.add_argument("--spam", action="append", type=Path, default=[], metavar="DIR|FILE")
    t.add_argument("--ham", action="append", type=Path, default=[], metavar="DIR|FILE")
    t.set_defaults(func=cmd_train)
    c = ssub.add_parser(
        "check", parents=parents, help="score a message file as the MX would, naming the rules"
    )
    c.add_argument("file", type=Path, help="the message (RFC 5322, e.g. a .eml file)")
    c.add_argument("--client-ip", default="", help="the sending client's address (for DNSBLs)")
    c.add_argument("--nameserver", help="HOST:PORT to resolve with (default: dns.nameservers)")
    c.set_defaults(func=cmd_check)
    s = ssub.add_parser("stats", parents=parents, help="what Bayes has learnt")
    s.set_defaults(func=cmd_stats)


def _config(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Config:
    return config_mod.load(
        getattr(args, "config", None), data_dir=getattr(args, "data_dir", None), overrides=overrides
    )


def message_files(path: Path) -> Iterator[Path]:
    """A file itself; a Maildir's cur/ and new/; else every file under a directory."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or directory: {path}")
    maildir = [path / d for d in ("cur", "new") if (path / d).is_dir()]
    if maildir:
        for d in maildir:
            yield from sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
        return
    yield from sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(MAX_FILE)


def cmd_train(args: argparse.Namespace) -> int:
    from reference.policy.spam import bayes_path
    from reference.scan.bayes import Bayes

    if not args.spam and not args.ham:
        print(
            "mailspec: give --spam and/or --ham (a Maildir, a directory or a file)", file=sys.stderr
        )
        return 2
    try:
        cfg = _config(args)
        batches = [
            (True, [f for p in args.spam for f in message_files(p)]),
            (False, [f for p in args.ham for f in message_files(p)]),
        ]
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    bayes = Bayes.open(
        bayes_path(cfg.data_path), min_spam=cfg.spam.bayes_min, min_ham=cfg.spam.bayes_min
    )
    try:
        for spam, files in batches:
            if not files:
                continue
            learnt = known = 0
            for f in files:
                try:
                    data = _read(f)
                except OSError as e:
                    print(f"mailspec: skipped {f}: {e.strerror}", file=sys.stderr)
                    continue
                if bayes.train(data, spam):
                    learnt += 1
                else:
                    known += 1
            kind = "spam" if spam else "ham"
            print(f"{kind}: learnt {learnt} messages ({known} already known)")
        print(_stats_line(bayes))
    finally:
        bayes.close()
    return 0


def _stats_line(bayes: Bayes) -> str:
    spam, ham = bayes.store.totals()
    state = (
        "it adds score"
        if bayes.ready
        else f"it adds score from {bayes.min_spam} spam and {bayes.min_ham} ham on"
    )
    return f"bayes: {spam} spam and {ham} ham learnt; {state}"


def cmd_stats(args: argparse.Namespace) -> int:
    from reference.policy.spam import bayes_path
    from reference.scan.bayes import Bayes

    try:
        cfg = _config(args)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    bayes = Bayes.open(
        bayes_path(cfg.data_path), min_spam=cfg.spam.bayes_min, min_ham=cfg.spam.bayes_min
    )
    try:
        print(_stats_line(bayes))
    finally:
        bayes.close()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.nameserver:
        overrides["dns.nameservers"] = [args.nameserver]
    try:
        cfg = _config(args, overrides)
        msg = _read(args.file)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mailspec: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    print(asyncio.run(_check(cfg, msg, args.client_ip)), end="")
    return 0


async def _check(cfg: Config, msg: bytes, client_ip: str) -> str:
    from reference.dns import make_resolver
    from reference.policy import Session
    from reference.policy.dnsbl import BlocklistZone, Dnsbl
    from reference.policy.spam import SpamCheck, bayes_path
    from reference.scan.bayes import Bayes
    from reference.scan.spam import UriZone

    sp = cfg.spam
    needs_dns = bool(sp.uribl_zones or (client_ip and cfg.dnsbl.zones))
    resolver = make_resolver(cfg) if needs_dns else None
    dnsbl = None
    if resolver is not None and client_ip and cfg.dnsbl.zones:
        zones = [BlocklistZone(*parse_dnsbl(z)) for z in cfg.dnsbl.zones]
        dnsbl = Dnsbl(resolver, zones, reject_at=cfg.dnsbl.reject_score)
    path = bayes_path(cfg.data_path)
    bayes = Bayes.open(path, min_spam=sp.bayes_min, min_ham=sp.bayes_min) if sp.bayes else None
    check = SpamCheck(
        reject_score=sp.reject_score,
        junk_score=sp.junk_score,
        resolver=resolver,
        uribl=[UriZone(*parse_dnsbl(z)) for z in sp.uribl_zones],
        dnsbl=dnsbl,
        bayes=bayes,
        macro_score=sp.macro_score,
        macro_max_size=sp.macro_max_size,
    )
    try:
        score = await check.score(Session(role="mx", peer=client_ip), msg)
    finally:
        if bayes is not None:
            bayes.close()
    total = score.total
    if total >= sp.reject_score:
        verdict = f"refused (reject_score {sp.reject_score:g})"
    elif total >= sp.junk_score:
        verdict = f"Junk (junk_score {sp.junk_score:g})"
    else:
        verdict = "inbox"
    out = [f"score {total:.1f}: {verdict}"]
    for h in sorted(score.hits, key=lambda h: -h.weight):
        detail = f"  {h.detail}" if h.detail else ""
        out.append(f"{h.weight:7.1f}  {h.rule}{detail}")
    return "\n".join(out) + "\n"
