"""`mailspec domain|user|alias …`: the directory of domains, accounts and aliases."""

from __future__ import annotations

import argparse
import sys

from reference.cli.common import (
    Subparsers,
    admin,
    directory,
    group,
    leaf,
    password_from,
    password_options,
    written_in,
)
from reference.delivery.retire import Retired
from reference.service import Conflict, NotFound, canonical_domain


def cmd_domain_add(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        try:
            name = a.add_domain(args.domain)
        except Conflict:
            name = a.domain(args.domain)  # adding one that exists is no error here
        print(f"domain {name} added {written_in(args)}")
    return 0


def cmd_domain_list(args: argparse.Namespace) -> int:
    with directory(args) as d:
        for name in d.domains():
            print(name)
        for name, target in d.alias_domains():
            print(f"{name} (alias of {target})")
    return 0


def cmd_domain_alias(args: argparse.Namespace) -> int:
    with directory(args, writes=True) as d:
        name, target = d.add_alias_domain(args.alias_domain, args.domain)
        print(f"domain {name} delivers as {target} {written_in(args)}")
    return 0


def cmd_domain_catchall(args: argparse.Namespace) -> int:
    with directory(args, writes=True) as d:
        key = "@" + d.own_domain(args.domain)
        if args.off:
            gone = d.remove_alias(key)
            print(
                f"catch-all of {key[1:]} {'removed' if gone else 'was not set'} {written_in(args)}"
            )
            return 0
        if not args.targets:
            targets = [t for _, t in d.aliases() if _ == key]
            print(f"{key[1:]}: {', '.join(targets) if targets else 'no catch-all'}")
            return 0
        _, targets = d.add_alias(key, *args.targets)
        print(f"catch-all of {key[1:]} -> {', '.join(targets)} {written_in(args)}")
    return 0


def _retired_line(r: Retired) -> str:
    where = f"moved to {r.archived_in}" if r.archived_in else "removed"
    return f"{r.address} deleted: {r.messages} message(s) {where}"


def cmd_domain_delete(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        retired = a.delete_domain(
            args.domain, archive_to=args.archive_to, remove_mail=args.remove_mail
        )
        for r in retired:
            print(_retired_line(r))
        print(f"domain {canonical_domain(args.domain)} deleted {written_in(args)}")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    password = password_from(args, args.address)
    with admin(args, writes=True) as a:
        account = a.add_account(args.address, password)
        print(f"user {account.address} added {written_in(args)}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = password_from(args, args.address)
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


def cmd_user_delete(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        retired = a.delete_account(
            args.address, archive_to=args.archive_to, remove_mail=args.remove_mail
        )
        print(f"{_retired_line(retired)} {written_in(args)}")
    return 0


def cmd_user_forward(args: argparse.Namespace) -> int:
    with admin(args, writes=bool(args.targets or args.off)) as a:
        if args.off:
            address = a.set_forwarding(args.address, [], keep=False).address
            print(f"{address}: no forwarding {written_in(args)}")
            return 0
        if args.targets:
            found = a.set_forwarding(args.address, args.targets, keep=args.keep)
        else:
            found = a.forwarding(args.address)
        if not found.targets:
            print(f"{found.address}: no forwarding")
        else:
            copy = "keeps a copy" if found.keep else "keeps no copy"
            changed = f" {written_in(args)}" if args.targets else ""
            print(f"{found.address} forwards to {', '.join(found.targets)}, {copy}{changed}")
    return 0


def cmd_user_bulk(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        address = a.set_bulk_sender(args.address, not args.off)
        state = "a sender of newsletters: bulk lane" if not args.off else "regular lane"
        print(f"{address}: {state} {written_in(args)}")
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        alias, targets = a.add_alias(args.alias, *args.targets)
        print(f"alias {alias} -> {', '.join(targets)} added {written_in(args)}")
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for alias, target in a.aliases(args.domain):
            print(f"{alias} -> {target}")
    return 0


def cmd_alias_remove(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        try:
            a.remove_alias(args.alias, args.target)
        except NotFound as e:
            print(f"mailspec: {e}", file=sys.stderr)
            return 1
        gone = f"{args.alias} -> {args.target}" if args.target else args.alias
        print(f"alias {gone} removed {written_in(args)}")
    return 0


def _targets(p: argparse.ArgumentParser, what: str, off: str) -> None:
    """TARGETs to set (none: show what is set) or --off to remove them."""
    p.add_argument("targets", nargs="*", metavar="TARGET", help=what)
    p.add_argument("--off", action="store_true", help=off)


def _mail_options(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--archive-to",
        metavar="ACCOUNT",
        help="move the mail into this account, under Archive/<address>",
    )
    how.add_argument("--remove-mail", action="store_true", help="remove the mail for good")


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the domain, user and alias commands to the ``mailspec`` command line."""
    dsub = group(sub, "domain", parents, "manage local domains")
    q = leaf(dsub, "add", parents, "add a local domain", cmd_domain_add)
    q.add_argument("domain", help="the domain name, e.g. example.test")
    leaf(dsub, "list", parents, "list local domains (and alias domains)", cmd_domain_list)
    q = leaf(
        dsub,
        "alias",
        parents,
        "deliver mail for every address of ALIAS_DOMAIN as if sent to DOMAIN",
        cmd_domain_alias,
    )
    q.add_argument("alias_domain", help="the other domain, e.g. example.org")
    q.add_argument("domain", help="one of our domains, e.g. example.net")
    q = leaf(
        dsub,
        "catchall",
        parents,
        "deliver mail for unknown addresses of DOMAIN to TARGETs (no TARGET: show it)",
        cmd_domain_catchall,
    )
    q.add_argument("domain", help="one of our domains")
    _targets(q, "an account, alias or address", "remove the catch-all")
    q = leaf(
        dsub,
        "delete",
        parents,
        "delete a domain with its accounts and aliases (or an alias domain)",
        cmd_domain_delete,
    )
    q.add_argument("domain", help="the domain")
    _mail_options(q)

    usub = group(sub, "user", parents, "manage accounts")
    q = leaf(usub, "add", parents, "add an account", cmd_user_add)
    q.add_argument("address", help="the account's address, in a local domain")
    password_options(q)
    q = leaf(usub, "passwd", parents, "change an account's password", cmd_user_passwd)
    q.add_argument("address", help="the account's address")
    password_options(q)
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
        usub, "delete", parents, "delete an account, its mail removed or archived", cmd_user_delete
    )
    q.add_argument("address", help="the account's address")
    _mail_options(q)
    q = leaf(
        usub,
        "forward",
        parents,
        "forward an account's mail to TARGETs (no TARGET: show its forwarding)",
        cmd_user_forward,
    )
    q.add_argument("address", help="the account's address")
    _targets(q, "an address here or elsewhere", "stop forwarding")
    q.add_argument("--keep", action="store_true", help="file a copy in the account too")
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
    q = leaf(
        asub,
        "add",
        parents,
        "deliver ALIAS to each TARGET (added to those it has); a local TARGET may send as it",
        cmd_alias_add,
    )
    q.add_argument("alias", help="the other address, in a local domain; @DOMAIN: its catch-all")
    q.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="an account or alias here, or an address elsewhere (the mail is forwarded)",
    )
    q = leaf(asub, "list", parents, "list aliases", cmd_alias_list)
    q.add_argument("--domain", help="only this domain's aliases")
    q = leaf(asub, "remove", parents, "remove an alias, or one of its targets", cmd_alias_remove)
    q.add_argument("alias", help="the alias to remove")
    q.add_argument("target", nargs="?", help="only this target")
