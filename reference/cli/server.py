"""`mailspec serve` and `mailspec config show|check`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reference import __version__
from reference import config as config_mod
from reference.cli.common import Subparsers, group, leaf, load_config
from reference.config import Config

if TYPE_CHECKING:
    from reference.app import Endpoint
    from reference.workers import Worker


def cmd_serve(args: argparse.Namespace) -> int:
    from reference import log as logmod
    from reference.workers import worker_count

    cfg = load_config(args)
    logmod.setup(cfg.server.log_level)

    # Absolute paths in the hints: they must reach this node's data from any folder.
    flags = f" --data-dir {cfg.data_path}"
    if args.config:
        flags = f" --config {Path(args.config).absolute()}" + flags
    count = worker_count(cfg)
    if count == 1:
        return asyncio.run(_serve(cfg, flags))
    return _supervise(cfg, flags, count)


async def _serve(cfg: Config, flags: str) -> int:
    """The node as one process: every listener, the queue runner."""
    from reference.app import App
    from reference.workers import StartupError

    # Signal handlers first: a SIGTERM sent while the node starts (or right after it
    # says it is up) must still stop it cleanly, with exit status 0.
    stop = _stop_event()
    try:
        app = App(cfg)
        endpoints = await app.start()
    except StartupError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    _banner(cfg, endpoints, app.cert_path, bool(app.directory.users()), flags, workers=1)
    # `mailspec queue flush|release` ask a running server to look at its spool now.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, app.runner.notify)
    pidfile = cfg.pid_path
    pidfile.write_text(f"{os.getpid()}\n")
    print("Stop with Ctrl-C or SIGTERM.", flush=True)
    try:
        await stop.wait()
    finally:
        pidfile.unlink(missing_ok=True)
        await app.stop()
    return 0


def _supervise(cfg: Config, flags: str, count: int) -> int:
    """The node as ``count`` worker processes under a supervisor (server.workers)."""
    from reference.app import Endpoint, cert_path, directory_url
    from reference.directory import Directory
    from reference.workers import StartupError, Supervisor

    supervisor = Supervisor(cfg, count, lambda worker: asyncio.run(_work(cfg, worker)))
    try:
        supervisor.start()
    except StartupError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    pidfile = cfg.pid_path
    try:
        endpoints = {
            name: Endpoint(name, *sock.getsockname()[:2])
            for name, sock in supervisor.sockets.items()
        }
        directory = Directory(directory_url(cfg), delimiter=cfg.addresses.delimiter)
        try:
            has_users = bool(directory.users())
        finally:
            directory.close()
        _banner(cfg, endpoints, cert_path(cfg), has_users, flags, workers=count)
        # The supervisor's pid: it passes SIGUSR1 on to the worker running the queue.
        pidfile.write_text(f"{os.getpid()}\n")
        print("Stop with Ctrl-C or SIGTERM.", flush=True)
        supervisor.run()
    finally:
        pidfile.unlink(missing_ok=True)
        supervisor.stop()
    return 0


async def _work(cfg: Config, worker: Worker) -> int:
    """One worker process: its share of the listeners (and, the primary, the queue runner)."""
    from reference.app import App
    from reference.workers import StartupError

    stop = _stop_event()
    try:
        app = App(cfg, worker=worker)
        await app.start()
    except StartupError as e:
        print(f"mailspec: {e}", file=sys.stderr)
        return 2
    if worker.primary:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, app.runner.notify)
    worker.ready()
    try:
        await stop.wait()
    finally:
        await app.stop()
    return 0


def _stop_event() -> asyncio.Event:
    """Set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _banner(
    cfg: Config,
    endpoints: Mapping[str, Endpoint],
    cert: Path,
    has_users: bool,
    flags: str,
    *,
    workers: int,
) -> None:
    """What `mailspec serve` prints once it is up (once, whatever the number of workers)."""
    print(f"mailspec {__version__}: {cfg.server.hostname}, data in {cfg.data_path}")
    for name, ep in endpoints.items():
        print(f"  {name:<12} {ep.url}")
    print(f"  certificate  {cert}")
    print(f"  workers      {workers} process{'es' if workers > 1 else ''} (server.workers)")
    if "web" in endpoints:
        web = endpoints["web"].url
        print(f"  panel        {web}/ (in a browser: as a user, with a token, or as")
        print(f"               an administrator: mailspec admin create NAME{flags})")
        print(f"  admin API    {web}/api/v1 (a token: mailspec token create --role admin{flags})")
    if not cfg.antivirus.clamd:
        print(
            "  no virus scanner: mail is accepted unscanned (set antivirus.clamd to a "
            "clamd's host:port or socket)"
        )
    if not has_users:
        print("No accounts yet. Add a domain and an account (in another shell):")
        print(f"  mailspec domain add example.test{flags}")
        print(f"  mailspec user add alice@example.test{flags}")


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
