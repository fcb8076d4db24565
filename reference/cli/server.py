"""`mailspec serve` and `mailspec config show|check`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from reference import __version__
from reference import config as config_mod
from reference.cli.common import Subparsers, group, leaf, load_config


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
        if "web" in endpoints:
            web = endpoints["web"].url
            print(f"  panel        {web}/ (in a browser: log in with a token, or as a user)")
            print(
                f"  admin API    {web}/api/v1 (a token: mailspec token create --role admin{flags})"
            )
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


def cmd_config_show(args: argparse.Namespace) -> int:
    print(config_mod.render(load_config(args), with_docs=not args.bare), end="")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    load_config(args)
    print("config OK")
    return 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add serve and config to the ``mailspec`` command line."""
    p = sub.add_parser(
        "serve",
        parents=parents,
        help="run the reference mail system",
        description="Run every role of the reference mail system on one node (MX, submission, "
        "IMAP, POP3, the queue runner) until SIGINT or SIGTERM; it prints its endpoints.",
    )
    p.set_defaults(func=cmd_serve)

    csub = group(sub, "config", parents, "show or check the configuration")
    q = leaf(csub, "show", parents, "print the effective config as TOML", cmd_config_show)
    q.add_argument("--bare", action="store_true", help="without the documentation comments")
    leaf(csub, "check", parents, "validate the config file", cmd_config_check)
