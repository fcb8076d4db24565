"""`mailspec queue list|show|flush|hold|release|delete`: the outbound queue, from outside."""

from __future__ import annotations

import argparse
import sys

from reference.cli.common import Subparsers, admin, group, leaf, load_config


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_queue_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        entries = a.queue()
        now = a.spool.clock.now()
        for e in entries:
            flags = ("held " if e.held else "") + a.lane(e)
            print(
                f"{e.qid}  {_age(now - e.created):>6}  {e.size:>8}  {flags:<12} "
                f"<{e.sender}>  attempts={e.attempts} next in {_age(max(0, e.next_attempt - now))}"
            )
            for r in e.recipients:
                reply = f"  {r.reply}" if r.reply else ""
                print(f"    {r.status:<9} {r.address}{reply}")
    print(f"{len(entries)} message(s) queued")
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    with admin(args) as a:
        entry, head = a.queued(args.qid)
    print(entry.to_json().decode())
    if entry.held:
        print("(held)")
    print(head)
    return 0


def _queue_change(args: argparse.Namespace, action: str) -> int:
    spool_path = load_config(args).spool_path
    with admin(args) as a:
        change = a.change_queue(action, args.qid)
    if not change.done and not change.missing:
        print(f"the queue in {spool_path} is empty: nothing to {action}")
        return 0
    for q in change.done:
        print(f"{q}: {action} (in {spool_path})")
    for q in change.missing:
        print(f"mailspec: no queued message {q}", file=sys.stderr)
    if change.notified:
        print(change.notified)
    return 1 if change.missing else 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the queue commands to the ``mailspec`` command line."""
    qsub = group(sub, "queue", parents, "inspect and steer the outbound queue")
    leaf(qsub, "list", parents, "every queued message and recipient", cmd_queue_list)
    q = leaf(qsub, "show", parents, "one message's envelope and headers", cmd_queue_show)
    q.add_argument("qid", help="the queue id (as in queue list)")
    for action, text in (
        ("flush", "retry now (all messages when no id is given)"),
        ("hold", "stop delivery attempts"),
        ("release", "resume delivery attempts"),
        ("delete", "remove from the queue, without a bounce"),
    ):
        q = leaf(qsub, action, parents, text, lambda a, act=action: _queue_change(a, act))
        if action == "flush":
            q.add_argument("qid", nargs="*", help="queue ids (default: every queued message)")
        else:
            q.add_argument("qid", nargs="+", help="queue ids (as in queue list)")
