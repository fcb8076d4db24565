"""`mailspec access add|remove|list`: administrators' access lists (as Postfix access maps),
platform-wide or for one domain's recipients."""

from __future__ import annotations

import argparse
import sys

from reference.cli.common import Subparsers, admin, group, leaf, written_in
from reference.directory import ACCESS_ACTIONS, ACCESS_KINDS, AccessRule
from reference.service import NotFound

__all__ = ["register"]


def _line(rule: AccessRule) -> str:
    text = f" {rule.text!r}" if rule.text else ""
    return f"{rule.scope or '(global)'}\t{rule.kind}\t{rule.pattern}\t{rule.action}{text}"


def cmd_access_add(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        rule = a.add_access(
            args.kind, args.pattern, args.rule_action, domain=args.domain, text=args.text
        )
        print(f"access rule added: {_line(rule)} {written_in(args)}")
    return 0


def cmd_access_remove(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        try:
            a.remove_access(args.kind, args.pattern, domain=args.domain)
        except NotFound as e:
            print(f"mailspec: {e}", file=sys.stderr)
            return 1
        print(f"access rule {args.kind} {args.pattern} removed {written_in(args)}")
    return 0


def cmd_access_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for rule in a.access_rules(args.domain):
            print(_line(rule))
    return 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the access commands to the ``mailspec`` command line."""
    asub = group(sub, "access", parents, "manage access lists (reject, accept, restrict)")
    q = leaf(
        asub,
        "add",
        parents,
        "add a rule: reject (refused with TEXT), accept (no greylisting) or restrict (a "
        "recipient only authenticated users of this platform may write to)",
        cmd_access_add,
    )
    q.add_argument("kind", choices=ACCESS_KINDS, help="what the rule looks at")
    q.add_argument(
        "pattern",
        help="sender/recipient: user@domain or domain (and its subdomains); client: an "
        "address or network (CIDR); helo: a host name (and its subdomains)",
    )
    q.add_argument("rule_action", metavar="action", choices=ACCESS_ACTIONS, help="what it does")
    q.add_argument("--domain", help="for this domain's recipients only (default: global)")
    q.add_argument("--text", default="", help="the refusal's text (default: Access denied)")
    q = leaf(asub, "remove", parents, "remove a rule", cmd_access_remove)
    q.add_argument("kind", choices=ACCESS_KINDS, help="the rule's kind")
    q.add_argument("pattern", help="the rule's pattern, as added")
    q.add_argument("--domain", help="a rule of this domain's (default: a global one)")
    q = leaf(
        asub, "list", parents, "list the rules (global ones show as '(global)')", cmd_access_list
    )
    q.add_argument("--domain", help="only this domain's rules")
