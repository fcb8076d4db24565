"""The `mailspec` command line: serve, config, domains and users, the fakes, and check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reference import __version__
from reference import config as config_mod
from reference.config import Config, ConfigError

# Subcommands that live in their own packages, each with register(sub, parents).
_PLUGINS = (
    "fakes.dns.cli",
    "fakes.mx.cli",
    "conformance.cli",
    "reference.auth.cli",
    "reference.cluster",
    "reference.scan.cli",
)


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", type=Path, help="TOML config file")
    p.add_argument("--data-dir", metavar="DIR", help="overrides server.data_dir")
    return p


def load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config, data_dir=args.data_dir)


@contextlib.contextmanager
def _directory(args: argparse.Namespace) -> Iterator[Any]:
    """The directory of the configured data_dir, closed again after the command."""
    d = _open_directory(load_config(args))
    try:
        yield d
    finally:
        d.close()


def _open_directory(cfg: Config) -> Any:
    from reference.app import directory_path
    from reference.directory import Directory

    return Directory(directory_path(cfg))


# -- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from reference import log as logmod
    from reference.app import App, StartupError

    cfg = load_config(args)
    logmod.setup(cfg.server.log_level)

    async def main() -> int:
        # Signal handlers first: a SIGTERM sent while the node starts (or right after it
        # says it is up) must still stop it cleanly, with exit status 0.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            app = App(cfg)
            endpoints = await app.start()
        except StartupError as e:
            print(f"mailspec: {e}", file=sys.stderr)
            return 2
        print(f"mailspec {__version__}: {cfg.server.hostname}, data in {cfg.server.data_dir}")
        for name, ep in endpoints.items():
            print(f"  {name:<12} {ep.url}")
        print(f"  certificate  {app.cert_path}")
        if not app.directory.users():
            flags = ""
            if args.config:
                flags += f" --config {args.config}"
            if args.data_dir:
                flags += f" --data-dir {args.data_dir}"
            print("No accounts yet. Add a domain and an account (in another shell):")
            print(f"  mailspec domain add example.test{flags}")
            print(f"  mailspec user add alice@example.test --password secret{flags}")
        # `mailspec queue flush|release` ask a running server to look at its spool now.
        loop.add_signal_handler(signal.SIGUSR1, app.runner.notify)
        pidfile = cfg.pid_path
        pidfile.write_text(f"{os.getpid()}\n")
        print("Stop with Ctrl-C or SIGTERM.", flush=True)
        try:
            await stop.wait()
        finally:
            pidfile.unlink(missing_ok=True)
            await app.stop()
        return 0

    return asyncio.run(main())


# -- queue


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
    qids = args.qid or ([e.qid for e in spool.entries()] if action == "flush" else [])
    if not qids:
        print(f"mailspec: name the queue ids to {action}", file=sys.stderr)
        return 2
    missing = [q for q in qids if not getattr(spool, action)(q)]
    for q in qids:
        if q not in missing:
            print(f"{q}: {action}")
    for q in missing:
        print(f"mailspec: no queued message {q}", file=sys.stderr)
    if action in ("flush", "release"):
        print(_poke_server(cfg))
    return 1 if missing else 0


# -- config


def cmd_config_show(args: argparse.Namespace) -> int:
    print(config_mod.render(load_config(args), with_docs=not args.bare), end="")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    load_config(args)
    print("config OK")
    return 0


# -- directory


def cmd_domain_add(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        print(f"domain {d.add_domain(args.domain)} added")
    return 0


def cmd_domain_list(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        for name in d.domains():
            print(name)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        account = d.add_user(args.address, args.password)
        print(f"user {account.address} added")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        d.set_password(args.address, args.password)
        print(f"password of {args.address} changed")
    return 0


def cmd_user_quota(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        address = d.set_quota(args.address, bytes=args.bytes, messages=args.messages)
        own_bytes, own_messages = d.quota(address)
        shown = ", ".join(
            f"{name} {'default' if v is None else v or 'unlimited'}"
            for name, v in (("bytes", own_bytes), ("messages", own_messages))
        )
        print(f"quota of {address}: {shown}")
    return 0


def cmd_user_enable(args: argparse.Namespace, enabled: bool) -> int:
    with _directory(args) as d:
        address = d.set_enabled(args.address, enabled)
        print(f"{address} {'enabled' if enabled else 'disabled'}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        for a in d.users(args.domain):
            print(a.address if a.enabled else f"{a.address} (disabled)")
    return 0


def cmd_user_bulk(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        address = d.set_bulk_sender(args.address, not args.off)
        state = "a sender of newsletters: bulk lane" if not args.off else "regular lane"
        print(f"{address}: {state}")
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        alias, target = d.add_alias(args.alias, args.target)
        print(f"alias {alias} -> {target} added")
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        for alias, target in d.aliases(args.domain):
            print(f"{alias} -> {target}")
    return 0


def cmd_alias_remove(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        if not d.remove_alias(args.alias):
            print(f"mailspec: no such alias: {args.alias}", file=sys.stderr)
            return 1
        print(f"alias {args.alias} removed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="mailspec",
        description="The executable specification of a hosted mail platform.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"mailspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the reference mail system")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", parents=[common], help="show or check the configuration")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = csub.add_parser("show", parents=[common], help="print the effective config as TOML")
    q.add_argument("--bare", action="store_true", help="without the documentation comments")
    q.set_defaults(func=cmd_config_show)
    q = csub.add_parser("check", parents=[common], help="validate the config file")
    q.set_defaults(func=cmd_config_check)

    p = sub.add_parser("queue", parents=[common], help="inspect and steer the outbound queue")
    qsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = qsub.add_parser("list", parents=[common], help="every queued message and recipient")
    q.set_defaults(func=cmd_queue_list)
    q = qsub.add_parser("show", parents=[common], help="one message's envelope and headers")
    q.add_argument("qid")
    q.set_defaults(func=cmd_queue_show)
    for action, text in (
        ("flush", "retry now (all messages when no id is given)"),
        ("hold", "stop delivery attempts"),
        ("release", "resume delivery attempts"),
        ("delete", "remove from the queue, without a bounce"),
    ):
        q = qsub.add_parser(action, parents=[common], help=text)
        q.add_argument("qid", nargs="*" if action == "flush" else "+")
        q.set_defaults(func=lambda a, act=action: _queue_change(a, act))

    p = sub.add_parser("domain", parents=[common], help="manage local domains")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = dsub.add_parser("add", parents=[common], help="add a local domain")
    q.add_argument("domain")
    q.set_defaults(func=cmd_domain_add)
    q = dsub.add_parser("list", parents=[common], help="list local domains")
    q.set_defaults(func=cmd_domain_list)

    p = sub.add_parser("user", parents=[common], help="manage accounts")
    usub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = usub.add_parser("add", parents=[common], help="add an account")
    q.add_argument("address")
    q.add_argument("--password", required=True)
    q.set_defaults(func=cmd_user_add)
    q = usub.add_parser("passwd", parents=[common], help="change an account's password")
    q.add_argument("address")
    q.add_argument("--password", required=True)
    q.set_defaults(func=cmd_user_passwd)
    q = usub.add_parser("quota", parents=[common], help="an account's own mailbox quota")
    q.add_argument("address")
    q.add_argument("--bytes", type=int, help="bytes over all folders (0: unlimited)")
    q.add_argument("--messages", type=int, help="messages over all folders (0: unlimited)")
    q.set_defaults(func=cmd_user_quota)
    for name, on, text in (
        ("enable", True, "let an account receive and log in again"),
        ("disable", False, "refuse mail to an account (550 5.2.1) and its logins"),
    ):
        q = usub.add_parser(name, parents=[common], help=text)
        q.add_argument("address")
        q.set_defaults(func=lambda a, on=on: cmd_user_enable(a, on))
    q = usub.add_parser("list", parents=[common], help="list accounts")
    q.add_argument("--domain")
    q.set_defaults(func=cmd_user_list)
    q = usub.add_parser(
        "bulk", parents=[common], help="mark an account as a sender of newsletters (bulk lane)"
    )
    q.add_argument("address")
    q.add_argument("--off", action="store_true", help="back to the regular lane")
    q.set_defaults(func=cmd_user_bulk)

    p = sub.add_parser("alias", parents=[common], help="manage aliases (other addresses)")
    asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = asub.add_parser(
        "add", parents=[common], help="deliver ALIAS to TARGET; TARGET may send as it"
    )
    q.add_argument("alias")
    q.add_argument("target", help="an existing account")
    q.set_defaults(func=cmd_alias_add)
    q = asub.add_parser("list", parents=[common], help="list aliases")
    q.add_argument("--domain")
    q.set_defaults(func=cmd_alias_list)
    q = asub.add_parser("remove", parents=[common], help="remove an alias")
    q.add_argument("alias")
    q.set_defaults(func=cmd_alias_remove)

    for modname in _PLUGINS:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(modname).register(sub, [common])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc: int = args.func(args)
    except ConfigError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # DirectoryError and other refusals with a clear reason
        print(f"mailspec: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
