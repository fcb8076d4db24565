"""`mailspec usage [--domain D] [--user ADDR] [--since DAY] [--json]`: usage per account and day."""

from __future__ import annotations

import argparse
import json

from reference.cli.common import Subparsers, admin


def _refused(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason or 'other'}={n}" for reason, n in sorted(counts.items())) or "-"


def cmd_usage(args: argparse.Namespace) -> int:
    with admin(args) as a:
        report = a.usage(domain=args.domain, account=args.user, since=args.since or "")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    head = f"{'day':<10}  {'account':<32} {'in':>5} {'bytes in':>10} {'out':>5} {'bytes out':>10}"
    print(f"{head} {'storage':>11}  refused")
    for title, rows in (("accounts", report.accounts), ("domains", report.domains)):
        if title == "domains" and rows:
            print("-- domains (their accounts' sums, and refusals for addresses not there)")
        for r in rows:
            storage = "-" if r.storage_bytes is None else str(r.storage_bytes)
            print(
                f"{r.day:<10}  {r.account or r.domain:<32} {r.messages_in:>5} {r.bytes_in:>10} "
                f"{r.messages_out:>5} {r.bytes_out:>10} {storage:>11}  {_refused(r.refused)}"
            )
    return 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``mailspec usage`` to the command line."""
    text = "messages and bytes in and out, refusals and storage, per account and day"
    p = sub.add_parser("usage", parents=parents, help=text, description=text[0].upper() + text[1:])
    p.add_argument("--domain", help="one domain's accounts (default: every domain)")
    p.add_argument("--user", metavar="ADDR", help="one account")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="from this day on (UTC)")
    p.add_argument("--json", action="store_true", help="as JSON (the admin API's form)")
    p.set_defaults(func=cmd_usage)
