"""`mailspec list|archive …`: distribution lists and archive-all accounts."""

from __future__ import annotations

import argparse

from reference.cli.common import Subparsers, admin, group, leaf, written_in
from reference.directory import LIST_POLICIES
from reference.service import ListInfo


def _show(info: ListInfo) -> None:
    print(f"list {info.address} ({info.name}): {info.policy}")
    print(f"  owner {info.owner} (bounces to {info.bounce_address}), List-Id <{info.list_id}>")
    for member in info.members:
        print(f"  member {member}")
    if not info.members:
        print("  no members")


def cmd_list_create(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        info = a.create_list(args.address, owner=args.owner, name=args.name, policy=args.policy)
        if args.members:
            info = a.add_list_members(info.address, args.members)
        print(f"list {info.address} created {written_in(args)}")
        _show(info)
    return 0


def cmd_list_delete(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        a.delete_list(args.address)
        print(f"list {args.address} deleted {written_in(args)}")
    return 0


def cmd_list_show(args: argparse.Namespace) -> int:
    with admin(args) as a:
        _show(a.mailing_list(args.address))
    return 0


def cmd_list_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for info in a.mailing_lists(args.domain):
            print(f"{info.address}\t{info.policy}\t{len(info.members)} members\towner {info.owner}")
    return 0


def cmd_list_add_member(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        info = a.add_list_members(args.address, args.members)
        print(f"{', '.join(args.members)} added to {info.address} {written_in(args)}")
    return 0


def cmd_list_remove_member(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        info = a.remove_list_member(args.address, args.member)
        print(f"{args.member} removed from {info.address} {written_in(args)}")
    return 0


def cmd_list_policy(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        info = a.set_list_policy(args.address, args.policy)
        print(f"list {info.address} is {info.policy} {written_in(args)}")
    return 0


def cmd_archive_set(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        rule = a.set_archive(args.scope, args.archive)
        print(f"mail to and from {rule.scope} is copied into {rule.archive} {written_in(args)}")
    return 0


def cmd_archive_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for rule in a.archive_rules():
            print(f"{rule.scope}\t-> {rule.archive}")
    return 0


def cmd_archive_clear(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        a.clear_archive(args.scope)
        print(f"mail of {args.scope} is no longer archived {written_in(args)}")
    return 0


POLICY_HELP = (
    "who may post: public (anyone), members (only its members' addresses), local (only "
    "users signed in here); others get 550 5.7.1 at RCPT"
)


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the list and archive commands to the ``mailspec`` command line."""
    lsub = group(sub, "list", parents, "manage distribution lists")
    q = leaf(lsub, "create", parents, "make a distribution list", cmd_list_create)
    q.add_argument("address", help="the list's address, in a local domain")
    q.add_argument("--owner", required=True, help="the account that receives its bounces")
    q.add_argument("--name", default="", help='its display name, e.g. "Team" (default: local part)')
    q.add_argument("--policy", choices=LIST_POLICIES, default="public", help=POLICY_HELP)
    q.add_argument("--member", dest="members", action="append", default=[], help="a member")
    q = leaf(lsub, "delete", parents, "delete a list", cmd_list_delete)
    q.add_argument("address", help="the list's address")
    q = leaf(lsub, "show", parents, "a list's policy, owner and members", cmd_list_show)
    q.add_argument("address", help="the list's address")
    q = leaf(lsub, "list", parents, "every list", cmd_list_list)
    q.add_argument("--domain", help="only this domain's lists")
    q = leaf(lsub, "add-member", parents, "add members to a list", cmd_list_add_member)
    q.add_argument("address", help="the list's address")
    q.add_argument(
        "members", nargs="+", metavar="MEMBER", help="an account, alias or list here, or elsewhere"
    )
    q = leaf(lsub, "remove-member", parents, "remove a member", cmd_list_remove_member)
    q.add_argument("address", help="the list's address")
    q.add_argument("member", help="the member's address")
    q = leaf(lsub, "policy", parents, "change who may post", cmd_list_policy)
    q.add_argument("address", help="the list's address")
    q.add_argument("policy", choices=LIST_POLICIES, help=POLICY_HELP)

    asub = group(sub, "archive", parents, "manage archive-all accounts")
    q = leaf(
        asub,
        "set",
        parents,
        "copy every message to and from SCOPE into ARCHIVE (read-only over IMAP)",
        cmd_archive_set,
    )
    q.add_argument("scope", help="an account, or a domain (each of its accounts)")
    q.add_argument("archive", help="the archive account")
    leaf(asub, "list", parents, "every archive rule", cmd_archive_list)
    q = leaf(asub, "clear", parents, "stop archiving SCOPE", cmd_archive_clear)
    q.add_argument("scope", help="the account or domain")
