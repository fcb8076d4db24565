"""`mailspec queue list|show|flush|hold|release|delete`: the outbound queue, from outside."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from reference.cli.common import Subparsers, group, leaf, load_config
from reference.config import Config


def _spool(cfg: Config) -> Any:
    from reference.clock import RealClock
    from reference.spool import Spool

    return Spool(cfg.spool_path, RealClock())


def _poke_server(cfg: Config) -> str:
    """Wake a running server's queue runner (SIGUSR1); say whether one was running."""
    try:
        pid = int(cfg.pid_path.read_text())
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError):
        return "no running server: the change applies at its next start"
    return f"server {pid} notified"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_queue_list(args: argparse.Namespace) -> int:
    spool = _spool(load_config(args))
    entries = spool.entries()
    now = spool.clock.now()
    from reference.delivery import lane_of

    for e in entries:
        flags = ("held " if e.held else "") + lane_of(e)
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
    spool = _spool(load_config(args))
    entry = spool.load(args.qid)
    if entry is None:
        print(f"mailspec: no queued message {args.qid}", file=sys.stderr)
        return 1
    print(entry.to_json().decode())
    if entry.held:
        print("(held)")
    head = spool.read_message(args.qid).split(b"\r\n\r\n", 1)[0]
    print(head.decode("utf-8", "replace"))
    return 0


def _queue_change(args: argparse.Namespace, action: str) -> int:
    cfg = load_config(args)
    spool = _spool(cfg)
    qids = args.qid or [e.qid for e in spool.entries()]  # only flush may name none
    if not qids:
        print(f"the queue in {cfg.spool_path} is empty: nothing to {action}")
        return 0
    missing = [q for q in qids if not getattr(spool, action)(q)]
    for q in qids:
        if q not in missing:
            print(f"{q}: {action} (in {cfg.spool_path})")
    for q in missing:
        print(f"mailspec: no queued message {q}", file=sys.stderr)
    if action in ("flush", "release"):
        print(_poke_server(cfg))
    return 1 if missing else 0


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
