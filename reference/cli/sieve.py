"""`mailspec sieve …` (an account's Sieve scripts) and `mailspec vacation …` (the
out-of-office form, kept as a generated vacation script)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reference.cli.common import Subparsers, directory, group, leaf, load_config, written_in
from reference.sieve import ScriptStore
from reference.sieve.outofoffice import SCRIPT_NAME, OutOfOffice, read, switch_off, switch_on


def _account(args: argparse.Namespace) -> str:
    """The account the address names (an alias names its account)."""
    with directory(args) as d:
        account = d.resolve(args.user)
        if account is None:
            raise ValueError(f"no such account: {args.user}")
        return account.address


def _scripts(args: argparse.Namespace) -> ScriptStore:
    from reference.app import sieve_scripts

    return sieve_scripts(load_config(args))


def _source(args: argparse.Namespace) -> str:
    if args.file == "-":
        return sys.stdin.read()
    return Path(args.file).read_text("utf-8")


def cmd_put(args: argparse.Namespace) -> int:
    user = _account(args)
    scripts = _scripts(args)
    scripts.put(user, args.name, _source(args))
    if args.activate:
        scripts.activate(user, args.name)
    state = " and activated" if args.activate else ""
    print(f"script {args.name!r} of {user} stored{state} {written_in(args)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    _scripts(args).check(_source(args))
    print("script OK")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    user = _account(args)
    scripts = _scripts(args)
    for name, active in scripts.listing(user):
        print(f"{name}{'  (active)' if active else ''}")
    for line in scripts.errors(user)[-5:]:
        print(f"error: {line}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    user = _account(args)
    text = _scripts(args).get(user, args.name)
    if text is None:
        raise ValueError(f"{user} has no script named {args.name!r}")
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    user = _account(args)
    _scripts(args).activate(user, "" if args.off else args.name or "")
    print(f"{user}: {'no script active' if args.off else f'{args.name!r} active'}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    user = _account(args)
    _scripts(args).delete(user, args.name)
    print(f"script {args.name!r} of {user} deleted {written_in(args)}")
    return 0


def cmd_vacation_set(args: argparse.Namespace) -> int:
    user = _account(args)
    ooo = OutOfOffice(
        subject=args.subject,
        text=args.text,
        start=args.start or "",
        end=args.end or "",
        days=args.days,
        from_=args.sender or "",
        addresses=tuple(args.address or ()),
    )
    from reference.app import sieve_replies

    replies = sieve_replies(load_config(args))
    try:
        active = switch_on(_scripts(args), replies, user, ooo)
    finally:
        replies.close()
    print(f"out-of-office of {user} set {written_in(args)}")
    if active:
        print(f"note: script {active!r} still applies; the out-of-office reply goes out beside it")
    return 0


def cmd_vacation_show(args: argparse.Namespace) -> int:
    user = _account(args)
    scripts = _scripts(args)
    found = read(scripts.get(user, SCRIPT_NAME) or "")
    if found is None:
        print(f"{user}: no out-of-office")
        return 0
    ooo, _ = found
    print(f"{user}: out-of-office on")
    print(f"  from      {ooo.start or 'now'}")
    print(f"  until     {ooo.end or 'cleared'}")
    print(f"  subject   {ooo.subject}")
    print(f"  days      {ooo.days} between replies to one sender")
    if ooo.from_:
        print(f"  reply as  {ooo.from_}")
    if ooo.addresses:
        print(f"  also for  {', '.join(ooo.addresses)}")
    active = scripts.active_name(user)
    if active and active != SCRIPT_NAME:
        print(f"  beside    {active} (the account's own script, which applies too)")
    print("  text:")
    for line in ooo.text.splitlines():
        print(f"    {line}")
    return 0


def cmd_vacation_clear(args: argparse.Namespace) -> int:
    user = _account(args)
    resumed = switch_off(_scripts(args), user)
    if resumed is None:
        print(f"{user}: no out-of-office")
        return 0
    print(f"out-of-office of {user} cleared {written_in(args)}")
    if resumed:
        print(f"script {resumed!r} active again")
    return 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the sieve and vacation commands to the ``mailspec`` command line."""
    ssub = group(sub, "sieve", parents, "an account's Sieve scripts (RFC 5228)")
    q = leaf(ssub, "put", parents, "store a script (checked first)", cmd_put)
    q.add_argument("user", help="the account")
    q.add_argument("name", help="the script's name")
    q.add_argument("file", help="the script file, or - for standard input")
    q.add_argument("--activate", action="store_true", help="make it the active script")
    q = leaf(ssub, "check", parents, "check a script without storing it", cmd_check)
    q.add_argument("file", help="the script file, or - for standard input")
    q = leaf(ssub, "list", parents, "list an account's scripts and recent errors", cmd_list)
    q.add_argument("user", help="the account")
    q = leaf(ssub, "show", parents, "print a script", cmd_show)
    q.add_argument("user", help="the account")
    q.add_argument("name", help="the script's name")
    q = leaf(ssub, "activate", parents, "make a script the one that runs", cmd_activate)
    q.add_argument("user", help="the account")
    q.add_argument("name", nargs="?", help="the script's name")
    q.add_argument("--off", action="store_true", help="run no script")
    q = leaf(ssub, "delete", parents, "delete a script (not the active one)", cmd_delete)
    q.add_argument("user", help="the account")
    q.add_argument("name", help="the script's name")

    vsub = group(sub, "vacation", parents, "an account's out-of-office reply (RFC 5230)")
    q = leaf(vsub, "set", parents, "turn the out-of-office reply on", cmd_vacation_set)
    q.add_argument("user", help="the account")
    q.add_argument("--subject", required=True, help="the reply's subject")
    q.add_argument("--text", required=True, help="the reply's text")
    q.add_argument("--start", help="first day away, YYYY-MM-DD (UTC); default: now")
    q.add_argument("--end", help="last day away, YYYY-MM-DD (UTC); default: until cleared")
    q.add_argument(
        "--days", type=int, default=7, help="days between two replies to one sender (1-30)"
    )
    q.add_argument("--from", dest="sender", help="the reply's From (default: the account)")
    q.add_argument(
        "--address",
        action="append",
        help="another address of the user that mail may be sent to (repeatable)",
    )
    q = leaf(vsub, "show", parents, "show the out-of-office settings", cmd_vacation_show)
    q.add_argument("user", help="the account")
    q = leaf(vsub, "clear", parents, "turn the out-of-office reply off", cmd_vacation_clear)
    q.add_argument("user", help="the account")
