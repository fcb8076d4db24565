"""`mailspec domain|user|alias …`: the directory of domains, accounts and aliases."""

from __future__ import annotations

import argparse
import getpass
import sys

from reference.cli.common import Subparsers, admin, group, leaf, written_in
from reference.service import Conflict, NotFound


def cmd_domain_add(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        try:
            name = a.add_domain(args.domain)
        except Conflict:
            name = a.domain(args.domain)  # adding one that exists is no error here
        print(f"domain {name} added {written_in(args)}")
    return 0


def cmd_domain_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for name in a.domains():
            print(name)
    return 0


def _password(args: argparse.Namespace) -> str:
    """The password from --password, from standard input, or from a prompt (asked twice)."""
    if args.password is not None:
        return str(args.password)
    if args.password_stdin:
        # One line, as `docker login --password-stdin` reads it; the newline is not part of it.
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.address}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    else:
        raise ValueError("give --password, --password-stdin, or run in a terminal for a prompt")
    if not password:
        raise ValueError("empty password")
    return password


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _password(args)
    with admin(args, writes=True) as a:
        account = a.add_account(args.address, password)
        print(f"user {account.address} added {written_in(args)}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    with admin(args, writes=True) as a:
        a.set_password(args.address, password)
        print(f"password of {args.address} changed {written_in(args)}")
    return 0


def cmd_user_quota(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        address = a.set_quota(args.address, bytes=args.bytes, messages=args.messages)
        info = a.account(address)
        shown = ", ".join(
            f"{name} {'default' if v is None else v or 'unlimited'}"
            for name, v in (("bytes", info.quota_bytes), ("messages", info.quota_messages))
        )
        print(f"quota of {address}: {shown} {written_in(args)}")
    return 0


def cmd_user_enable(args: argparse.Namespace, enabled: bool) -> int:
    with admin(args, writes=True) as a:
        address = a.set_enabled(args.address, enabled)
        print(f"{address} {'enabled' if enabled else 'disabled'} {written_in(args)}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for account in a.accounts(args.domain):
            print(account.address if account.enabled else f"{account.address} (disabled)")
    return 0


def cmd_user_bulk(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        address = a.set_bulk_sender(args.address, not args.off)
        state = "a sender of newsletters: bulk lane" if not args.off else "regular lane"
        print(f"{address}: {state} {written_in(args)}")
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        alias, target = a.add_alias(args.alias, args.target)
        print(f"alias {alias} -> {target} added {written_in(args)}")
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for alias, target in a.aliases(args.domain):
            print(f"{alias} -> {target}")
    return 0


def cmd_alias_remove(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        try:
            a.remove_alias(args.alias)
        except NotFound as e:
            print(f"mailspec: {e}", file=sys.stderr)
            return 1
        print(f"alias {args.alias} removed {written_in(args)}")
    return 0


def _password_options(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--password",
        metavar="PW",
        help="the password (lands in shell history; without it: a prompt)",
    )
    how.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the domain, user and alias commands to the ``mailspec`` command line."""
    dsub = group(sub, "domain", parents, "manage local domains")
    q = leaf(dsub, "add", parents, "add a local domain", cmd_domain_add)
    q.add_argument("domain", help="the domain name, e.g. example.test")
    leaf(dsub, "list", parents, "list local domains", cmd_domain_list)

    usub = group(sub, "user", parents, "manage accounts")
    q = leaf(usub, "add", parents, "add an account", cmd_user_add)
    q.add_argument("address", help="the account's address, in a local domain")
    _password_options(q)
    q = leaf(usub, "passwd", parents, "change an account's password", cmd_user_passwd)
    q.add_argument("address", help="the account's address")
    _password_options(q)
    q = leaf(usub, "quota", parents, "an account's own mailbox quota", cmd_user_quota)
    q.add_argument("address", help="the account's address")
    q.add_argument("--bytes", type=int, help="bytes over all folders (0: unlimited)")
    q.add_argument("--messages", type=int, help="messages over all folders (0: unlimited)")
    for name, on, text in (
        ("enable", True, "let an account receive and log in again"),
        ("disable", False, "refuse mail to an account (550 5.2.1) and its logins"),
    ):
        q = leaf(usub, name, parents, text, lambda a, on=on: cmd_user_enable(a, on))
        q.add_argument("address", help="the account's address")
    q = leaf(usub, "list", parents, "list accounts", cmd_user_list)
    q.add_argument("--domain", help="only this domain's accounts")
    q = leaf(
        usub,
        "bulk",
        parents,
        "mark an account as a sender of newsletters (bulk lane)",
        cmd_user_bulk,
    )
    q.add_argument("address", help="the account's address")
    q.add_argument("--off", action="store_true", help="back to the regular lane")

    asub = group(sub, "alias", parents, "manage aliases (other addresses)")
    q = leaf(asub, "add", parents, "deliver ALIAS to TARGET; TARGET may send as it", cmd_alias_add)
    q.add_argument("alias", help="the other address, in a local domain")
    q.add_argument("target", help="an existing account")
    q = leaf(asub, "list", parents, "list aliases", cmd_alias_list)
    q.add_argument("--domain", help="only this domain's aliases")
    q = leaf(asub, "remove", parents, "remove an alias", cmd_alias_remove)
    q.add_argument("alias", help="the alias to remove")
