"""The `mailspec` command line: serve, config, domains and users, the fakes, and check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
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


def _common(*, top: bool) -> argparse.ArgumentParser:
    """The global options, given before the verb (``top``) or after it.

    After the verb they default to SUPPRESS, so a sub-parser only sets what was written
    after it and never overwrites with its default what was given before the verb: the
    value nearest the verb wins.
    """
    default = None if top else argparse.SUPPRESS
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument("--config", metavar="FILE", type=Path, default=default, help="TOML config file")
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        default=default,
        help="overrides server.data_dir (spool, mail, directory, keys)",
    )
    return p


def load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config, data_dir=args.data_dir)


@contextlib.contextmanager
def _directory(args: argparse.Namespace, *, writes: bool = False) -> Iterator[Any]:
    """The directory of the configured data_dir, closed again after the command."""
    d = open_directory(load_config(args), writes=writes)
    try:
        yield d
    finally:
        d.close()


def open_directory(cfg: Config, *, writes: bool = False) -> Any:
    """The directory database; a command that writes into a new one says so, with its path.

    The default data_dir is relative: run from another folder, a command would otherwise
    silently make a second, empty directory that the running server never reads.
    """
    from reference.app import directory_path
    from reference.directory import Directory

    path = directory_path(cfg)
    if writes and not path.exists():
        print(
            f"mailspec: new directory {path} (no server has used this data_dir yet; "
            "a server started with another --data-dir or from another folder will not see it)",
            file=sys.stderr,
        )
    return Directory(path)


def _in(args: argparse.Namespace) -> str:
    """Where a command wrote, for its confirmation line."""
    return f"(in {load_config(args).data_path})"


# -- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from reference import log as logmod
    from reference.app import App, StartupError

    cfg = load_config(args)
    logmod.setup(cfg.server.log_level)

    # Absolute paths in the hints: they must reach this node's data from any folder.
    flags = f" --data-dir {cfg.data_path}"
    if args.config:
        flags = f" --config {Path(args.config).absolute()}" + flags

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
        print(f"mailspec {__version__}: {cfg.server.hostname}, data in {cfg.data_path}")
        for name, ep in endpoints.items():
            print(f"  {name:<12} {ep.url}")
        print(f"  certificate  {app.cert_path}")
        if not cfg.antivirus.clamd:
            print(
                "  no virus scanner: mail is accepted unscanned (set antivirus.clamd to a "
                "clamd's host:port or socket)"
            )
        if not app.directory.users():
            print("No accounts yet. Add a domain and an account (in another shell):")
            print(f"  mailspec domain add example.test{flags}")
            print(f"  mailspec user add alice@example.test{flags}")
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
    with _directory(args, writes=True) as d:
        print(f"domain {d.add_domain(args.domain)} added {_in(args)}")
    return 0


def cmd_domain_list(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        for name in d.domains():
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
    with _directory(args, writes=True) as d:
        account = d.add_user(args.address, password)
        print(f"user {account.address} added {_in(args)}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    with _directory(args, writes=True) as d:
        d.set_password(args.address, password)
        print(f"password of {args.address} changed {_in(args)}")
    return 0


def cmd_user_quota(args: argparse.Namespace) -> int:
    with _directory(args, writes=True) as d:
        address = d.set_quota(args.address, bytes=args.bytes, messages=args.messages)
        own_bytes, own_messages = d.quota(address)
        shown = ", ".join(
            f"{name} {'default' if v is None else v or 'unlimited'}"
            for name, v in (("bytes", own_bytes), ("messages", own_messages))
        )
        print(f"quota of {address}: {shown} {_in(args)}")
    return 0


def cmd_user_enable(args: argparse.Namespace, enabled: bool) -> int:
    with _directory(args, writes=True) as d:
        address = d.set_enabled(args.address, enabled)
        print(f"{address} {'enabled' if enabled else 'disabled'} {_in(args)}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        for a in d.users(args.domain):
            print(a.address if a.enabled else f"{a.address} (disabled)")
    return 0


def cmd_user_bulk(args: argparse.Namespace) -> int:
    with _directory(args, writes=True) as d:
        address = d.set_bulk_sender(args.address, not args.off)
        state = "a sender of newsletters: bulk lane" if not args.off else "regular lane"
        print(f"{address}: {state} {_in(args)}")
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    with _directory(args, writes=True) as d:
        alias, target = d.add_alias(args.alias, args.target)
        print(f"alias {alias} -> {target} added {_in(args)}")
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    with _directory(args) as d:
        for alias, target in d.aliases(args.domain):
            print(f"{alias} -> {target}")
    return 0


def cmd_alias_remove(args: argparse.Namespace) -> int:
    with _directory(args, writes=True) as d:
        if not d.remove_alias(args.alias):
            print(f"mailspec: no such alias: {args.alias}", file=sys.stderr)
            return 1
        print(f"alias {args.alias} removed {_in(args)}")
    return 0


def _group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    parents: list[argparse.ArgumentParser],
    text: str,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command with actions of its own (``domain add``), taking the global options too."""
    p = sub.add_parser(name, parents=parents, help=text, description=text[0].upper() + text[1:])
    return p.add_subparsers(dest="action", metavar="ACTION", required=True)


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    parents: list[argparse.ArgumentParser],
    text: str,
    func: Any,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, parents=parents, help=text, description=text[0].upper() + text[1:])
    p.set_defaults(func=func)
    return p


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


def build_parser() -> argparse.ArgumentParser:
    common = [_common(top=False)]
    parser = argparse.ArgumentParser(
        prog="mailspec",
        description="The executable specification of a hosted mail platform. The global "
        "options go before or after the command; given in both places, the one after it wins.",
        parents=[_common(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"mailspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        parents=common,
        help="run the reference mail system",
        description="Run every role of the reference mail system on one node (MX, submission, "
        "IMAP, POP3, the queue runner) until SIGINT or SIGTERM; it prints its endpoints.",
    )
    p.set_defaults(func=cmd_serve)

    csub = _group(sub, "config", common, "show or check the configuration")
    q = _leaf(csub, "show", common, "print the effective config as TOML", cmd_config_show)
    q.add_argument("--bare", action="store_true", help="without the documentation comments")
    _leaf(csub, "check", common, "validate the config file", cmd_config_check)

    qsub = _group(sub, "queue", common, "inspect and steer the outbound queue")
    _leaf(qsub, "list", common, "every queued message and recipient", cmd_queue_list)
    q = _leaf(qsub, "show", common, "one message's envelope and headers", cmd_queue_show)
    q.add_argument("qid", help="the queue id (as in queue list)")
    for action, text in (
        ("flush", "retry now (all messages when no id is given)"),
        ("hold", "stop delivery attempts"),
        ("release", "resume delivery attempts"),
        ("delete", "remove from the queue, without a bounce"),
    ):
        q = _leaf(qsub, action, common, text, lambda a, act=action: _queue_change(a, act))
        if action == "flush":
            q.add_argument("qid", nargs="*", help="queue ids (default: every queued message)")
        else:
            q.add_argument("qid", nargs="+", help="queue ids (as in queue list)")

    dsub = _group(sub, "domain", common, "manage local domains")
    q = _leaf(dsub, "add", common, "add a local domain", cmd_domain_add)
    q.add_argument("domain", help="the domain name, e.g. example.test")
    _leaf(dsub, "list", common, "list local domains", cmd_domain_list)

    usub = _group(sub, "user", common, "manage accounts")
    q = _leaf(usub, "add", common, "add an account", cmd_user_add)
    q.add_argument("address", help="the account's address, in a local domain")
    _password_options(q)
    q = _leaf(usub, "passwd", common, "change an account's password", cmd_user_passwd)
    q.add_argument("address", help="the account's address")
    _password_options(q)
    q = _leaf(usub, "quota", common, "an account's own mailbox quota", cmd_user_quota)
    q.add_argument("address", help="the account's address")
    q.add_argument("--bytes", type=int, help="bytes over all folders (0: unlimited)")
    q.add_argument("--messages", type=int, help="messages over all folders (0: unlimited)")
    for name, on, text in (
        ("enable", True, "let an account receive and log in again"),
        ("disable", False, "refuse mail to an account (550 5.2.1) and its logins"),
    ):
        q = _leaf(usub, name, common, text, lambda a, on=on: cmd_user_enable(a, on))
        q.add_argument("address", help="the account's address")
    q = _leaf(usub, "list", common, "list accounts", cmd_user_list)
    q.add_argument("--domain", help="only this domain's accounts")
    q = _leaf(
        usub,
        "bulk",
        common,
        "mark an account as a sender of newsletters (bulk lane)",
        cmd_user_bulk,
    )
    q.add_argument("address", help="the account's address")
    q.add_argument("--off", action="store_true", help="back to the regular lane")

    asub = _group(sub, "alias", common, "manage aliases (other addresses)")
    q = _leaf(asub, "add", common, "deliver ALIAS to TARGET; TARGET may send as it", cmd_alias_add)
    q.add_argument("alias", help="the other address, in a local domain")
    q.add_argument("target", help="an existing account")
    q = _leaf(asub, "list", common, "list aliases", cmd_alias_list)
    q.add_argument("--domain", help="only this domain's aliases")
    q = _leaf(asub, "remove", common, "remove an alias", cmd_alias_remove)
    q.add_argument("alias", help="the alias to remove")

    for modname in _PLUGINS:
        importlib.import_module(modname).register(sub, common)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every command without a description its one-line help, so `--help` says what it is."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
            for name, child in action.choices.items():
                text = helps.get(name) or ""
                if not child.description and text:
                    child.description = text[0].upper() + text[1:] + "."
                _describe(child)


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
