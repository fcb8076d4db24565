"""`mailspec spam …`: teach Bayes, score a message, per-domain and per-user settings and lists.

    mailspec spam learn --spam DIR --ham DIR [--user ADDRESS]   (``train`` is the same)
    mailspec spam check FILE [--rcpt ADDRESS] [--sender ADDRESS] [--client-ip IP]
    mailspec spam stats [--user ADDRESS]
    mailspec spam settings ADDRESS-OR-DOMAIN [--reject N] [--junk N] [--reset]
    mailspec spam allow|block ADDRESS PATTERN [--remove]        (PATTERN: an address or @domain)
    mailspec spam lists ADDRESS

Settings and lists live in the directory, so a running server follows them at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from reference.cli.common import admin, load_config, written_in
from reference.config import Config, ConfigError

if TYPE_CHECKING:
    from reference.directory import Directory
    from reference.scan.bayes import Bayes, Classifiers
    from reference.service import SpamThresholds

MAX_FILE = 32 << 20  # bytes read from one message file


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    """Add the spam subcommands to the mailspec command line."""
    p = sub.add_parser(
        "spam", parents=parents, help="spam filter: Bayes, settings, sender lists, diagnostics"
    )
    ssub = p.add_subparsers(dest="spam_cmd", required=True)
    t = ssub.add_parser(
        "learn",
        aliases=["train"],
        parents=parents,
        help="teach Bayes from messages: Maildirs, directories of .eml files, or files",
    )
    t.add_argument("--spam", action="append", type=Path, default=[], metavar="DIR|FILE")
    t.add_argument("--ham", action="append", type=Path, default=[], metavar="DIR|FILE")
    t.add_argument(
        "--user", metavar="ADDRESS", help="teach this account's own classifier (default: global)"
    )
    t.set_defaults(func=cmd_learn)
    c = ssub.add_parser(
        "check", parents=parents, help="score a message file as the MX would, naming the rules"
    )
    c.add_argument("file", type=Path, help="the message (RFC 5322, e.g. a .eml file)")
    c.add_argument("--client-ip", default="", help="the sending client's address (for DNSBLs)")
    c.add_argument("--nameserver", help="HOST:PORT to resolve with (default: dns.nameservers)")
    c.add_argument(
        "--rcpt", metavar="ADDRESS", help="judge it for this recipient (settings, lists, Bayes)"
    )
    c.add_argument("--sender", default="", metavar="ADDRESS", help="the envelope sender")
    c.set_defaults(func=cmd_check)
    s = ssub.add_parser("stats", parents=parents, help="what Bayes has learnt")
    s.add_argument("--user", metavar="ADDRESS", help="this account's own classifier too")
    s.set_defaults(func=cmd_stats)
    st = ssub.add_parser(
        "settings", parents=parents, help="a domain's or an account's thresholds (show or set)"
    )
    st.add_argument(
        "scope",
        metavar="ADDRESS-OR-DOMAIN",
        help="an account, or a local domain for all its accounts",
    )
    st.add_argument("--reject", type=float, metavar="N", help="refused at DATA from this score")
    st.add_argument("--junk", type=float, metavar="N", help="filed into Junk from this score")
    st.add_argument("--reset", action="store_true", help="inherit everything again")
    st.set_defaults(func=cmd_settings)
    for kind, what in (("allow", "never scored as spam"), ("block", "refused at RCPT")):
        a = ssub.add_parser(
            kind, parents=parents, help=f"senders an account wants {what}: an address or @domain"
        )
        a.add_argument("address", metavar="ADDRESS", help="the account")
        a.add_argument("pattern", metavar="PATTERN", help="sender@domain or @domain")
        a.add_argument("--remove", action="store_true", help="take the pattern off the list")
        a.set_defaults(func=cmd_list_change, kind=kind)
    ls = ssub.add_parser("lists", parents=parents, help="an account's allowed and blocked senders")
    ls.add_argument("address", metavar="ADDRESS", help="the account")
    ls.set_defaults(func=cmd_lists)


def _directory(cfg: Config, *, writes: bool = False) -> Directory:
    from reference.cli.common import open_directory

    d: Directory = open_directory(cfg, writes=writes)
    return d


def _classifiers(cfg: Config) -> Classifiers:
    from reference.policy.spam import open_classifiers

    sp = cfg.spam
    return open_classifiers(
        cfg.state.url,
        cfg.data_path,
        min_spam=sp.bayes_min,
        min_ham=sp.bayes_min,
        user_min=sp.bayes_user_min,
    )


def _account(cfg: Config, address: str) -> str:
    """The canonical address of an existing account, or a ValueError naming it."""
    from reference.directory import DirectoryError

    d = _directory(cfg)
    try:
        found = d.lookup(address)
    finally:
        d.close()
    if found is None:
        raise DirectoryError(f"no such account: {address}")
    return found.address


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


# -- learn and stats


def cmd_learn(args: argparse.Namespace) -> int:
    if not args.spam and not args.ham:
        print(
            "mailspec: give --spam and/or --ham (a Maildir, a directory or a file)", file=sys.stderr
        )
        return 2
    try:
        cfg = load_config(args)
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
    user = _account(cfg, args.user) if args.user else ""
    classifiers = _classifiers(cfg)
    bayes = classifiers.user(user) if user else classifiers.global_
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
            where = "Redis (state.url)" if cfg.state.url else cfg.data_path
            print(f"{kind}: learnt {learnt} messages ({known} already known) in {where}")
        print(_stats_line(bayes, user))
    finally:
        classifiers.close()
    return 0


def _stats_line(bayes: Bayes, user: str = "") -> str:
    spam, ham = bayes.store.totals()
    if user:
        state = (
            "it scores their mail"
            if bayes.ready
            else f"it scores their mail from {bayes.min_spam} spam and {bayes.min_ham} ham on"
        )
        return f"bayes for {user}: {spam} spam and {ham} ham learnt; {state}"
    state = (
        "it adds score"
        if bayes.ready
        else f"it adds score from {bayes.min_spam} spam and {bayes.min_ham} ham on"
    )
    return f"bayes: {spam} spam and {ham} ham learnt; {state}"


def cmd_stats(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    user = _account(cfg, args.user) if args.user else ""
    classifiers = _classifiers(cfg)
    try:
        print(_stats_line(classifiers.global_))
        if user:
            print(_stats_line(classifiers.user(user), user))
    finally:
        classifiers.close()
    return 0


# -- settings and lists


def _effective(t: SpamThresholds) -> str:
    """``reject 10 (config), junk 3 (user)``."""
    return f"reject {t.reject_score:g} ({t.reject_from}), junk {t.junk_score:g} ({t.junk_from})"


def cmd_settings(args: argparse.Namespace) -> int:
    writes = args.reset or args.reject is not None or args.junk is not None
    with admin(args, writes=writes) as a:
        if args.reset:
            a.reset_spam_thresholds(args.scope)
        if args.reject is not None or args.junk is not None:
            found = a.set_spam_thresholds(args.scope, reject=args.reject, junk=args.junk)
        else:
            found = a.spam_thresholds(args.scope)
        print(f"{found.scope}: {_effective(found)}" + (f" {written_in(args)}" if writes else ""))
    if found.junk_score > found.reject_score:
        print(
            f"mailspec: note: junk {found.junk_score:g} is above reject {found.reject_score:g}: "
            "such mail is refused, never filed into Junk",
            file=sys.stderr,
        )
    return 0


def cmd_list_change(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        if args.remove:
            a.unlist_sender(args.address, args.pattern)
            print(f"{args.address}: {args.pattern} removed {written_in(args)}")
            return 0
        entry = a.list_sender(args.address, args.kind, args.pattern)
        verb = "allowed (never scored as spam)" if args.kind == "allow" else "blocked (550 5.7.1)"
        print(f"{args.address}: {entry} {verb} {written_in(args)}")
    return 0


def cmd_lists(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for kind, pattern in a.sender_lists(args.address):
            print(f"{kind:<6} {pattern}")
    return 0


# -- check


def cmd_check(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.nameserver:
        overrides["dns.nameservers"] = [args.nameserver]
    try:
        cfg = load_config(args, overrides)
        msg = _read(args.file)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mailspec: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    print(asyncio.run(_check(cfg, msg, args.client_ip, args.rcpt, args.sender)), end="")
    return 0


async def _check(
    cfg: Config, msg: bytes, client_ip: str, rcpt: str | None = None, sender: str = ""
) -> str:
    from reference.assembly import dnsbl as blocklists
    from reference.assembly import spam_check
    from reference.dns import make_resolver
    from reference.policy import Session

    sp = cfg.spam
    needs_dns = bool(sp.uribl_zones or (client_ip and cfg.dnsbl.zones))
    resolver = make_resolver(cfg) if needs_dns else None
    dnsbl = blocklists(cfg, resolver) if resolver is not None and client_ip else None
    classifiers = _classifiers(cfg) if sp.bayes else None
    directory = _directory(cfg) if rcpt else None
    check = spam_check(cfg, resolver=resolver, dnsbl=dnsbl, bayes=classifiers, directory=directory)
    try:
        verdict = await check.evaluate(
            Session(role="mx", peer=client_ip), sender, [rcpt] if rcpt else [], msg
        )
    finally:
        if classifiers is not None:
            classifiers.close()
        if directory is not None:
            directory.close()
    score, t = verdict.score, verdict.thresholds
    whose = "" if t.source == "global" else f", {t.source} settings"
    action = verdict.action
    if action == "refused":
        line = f"refused (reject_score {t.reject:g}{whose})"
    elif action == "junk":
        line = f"Junk (junk_score {t.junk:g}{whose})"
    else:
        line = "inbox"
    out = [f"score {score.total:.1f}: {line}"]
    for h in sorted(score.hits, key=lambda h: -h.weight):
        detail = f"  {h.detail}" if h.detail else ""
        out.append(f"{h.weight:7.1f}  {h.rule}{detail}")
    return "\n".join(out) + "\n"
