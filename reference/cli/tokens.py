"""`mailspec token create|list|revoke`: tokens for the admin API (/api/v1 on listen.web)."""

from __future__ import annotations

import argparse
import time

from reference.cli.common import Subparsers, admin, group, leaf, written_in
from reference.directory import ROLES


def cmd_token_create(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        token, text = a.create_token(args.role, domain=args.domain, user=args.user)
    scope = token.domain or token.user or "the platform"
    print(f"token {token.id}: {token.role} of {scope} {written_in(args)}")
    print("Send it as 'Authorization: Bearer <token>'; it is shown only now:")
    print(text)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for t in a.tokens():
            made = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.created))
            print(f"{t.id}  {t.role:<12}  {t.domain or t.user or '-':<30}  made {made} UTC")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        a.revoke_token(args.id)
    print(f"token {args.id} revoked {written_in(args)}")
    return 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the token commands to the ``mailspec`` command line."""
    tsub = group(sub, "token", parents, "tokens for the admin API")
    q = leaf(tsub, "create", parents, "make a token (printed once)", cmd_token_create)
    q.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    q.add_argument("--domain", help="the domain a domain-admin token administers")
    q.add_argument("--user", help="the account a user token is for (self-service)")
    leaf(
        tsub,
        "list",
        parents,
        "list tokens (ids, roles, scopes; never their secrets)",
        cmd_token_list,
    )
    q = leaf(tsub, "revoke", parents, "revoke a token", cmd_token_revoke)
    q.add_argument("id", help="the token's id (as in token list)")
