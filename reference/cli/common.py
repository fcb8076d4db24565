"""What every command of the command line shares: the global options, the config, the directory."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from reference import config as config_mod
from reference.config import Config

if TYPE_CHECKING:
    from reference.directory import Directory
    from reference.service import Admin

# A string: argparse's action class cannot be subscripted at run time (Python 3.11).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def global_options(*, top: bool) -> argparse.ArgumentParser:
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


def load_config(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Config:
    """The config the global options name, with a command's own ``overrides`` (dotted keys)."""
    return config_mod.load(
        getattr(args, "config", None), data_dir=getattr(args, "data_dir", None), overrides=overrides
    )


@contextlib.contextmanager
def directory(args: argparse.Namespace, *, writes: bool = False) -> Iterator[Directory]:
    """The directory of the configured data_dir, closed again after the command."""
    d = open_directory(load_config(args), writes=writes)
    try:
        yield d
    finally:
        d.close()


@contextlib.contextmanager
def admin(args: argparse.Namespace, *, writes: bool = False) -> Iterator[Admin]:
    """The operations of the service layer on the configured data_dir (as the API's)."""
    from reference.app import mail_store
    from reference.clock import RealClock
    from reference.service import Admin

    cfg = load_config(args)
    d = open_directory(cfg, writes=writes)
    try:
        # The mailboxes with their quotas, as the server has them (an archive may be full).
        mail = mail_store(cfg, d, RealClock())
        operations = Admin(d, cfg, notify=lambda qids: poke_server(cfg), mail=mail)
        try:
            yield operations
        finally:
            operations.close()
    finally:
        d.close()


def poke_server(cfg: Config) -> str:
    """Wake a running server's queue runner (SIGUSR1); say whether one was running."""
    import os
    import signal

    try:
        pid = int(cfg.pid_path.read_text())
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError):
        return "no running server: the change applies at its next start"
    return f"server {pid} notified"


def open_directory(cfg: Config, *, writes: bool = False) -> Directory:
    """The directory database; a command that writes into a new one says so, with its path.

    The default data_dir is relative: run from another folder, a command would otherwise
    silently make a second, empty directory that the running server never reads.
    """
    from reference.app import directory_url
    from reference.directory import Directory

    path = directory_url(cfg)
    if writes and isinstance(path, Path) and not path.exists():
        print(
            f"mailspec: new directory {path} (no server has used this data_dir yet; "
            "a server started with another --data-dir or from another folder will not see it)",
            file=sys.stderr,
        )
    return Directory(path, delimiter=cfg.addresses.delimiter)


def written_in(args: argparse.Namespace) -> str:
    """Where a command wrote, for its confirmation line."""
    return f"(in {load_config(args).data_path})"


def group(
    sub: Subparsers,
    name: str,
    parents: list[argparse.ArgumentParser],
    text: str,
) -> Subparsers:
    """A command with actions of its own (``domain add``), taking the global options too."""
    p = sub.add_parser(name, parents=parents, help=text, description=text[0].upper() + text[1:])
    return p.add_subparsers(dest="action", metavar="ACTION", required=True)


def leaf(
    sub: Subparsers,
    name: str,
    parents: list[argparse.ArgumentParser],
    text: str,
    func: Any,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, parents=parents, help=text, description=text[0].upper() + text[1:])
    p.set_defaults(func=func)
    return p


def password_options(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--password",
        metavar="PW",
        help="the password (lands in shell history; without it: a prompt)",
    )
    how.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def password_from(args: argparse.Namespace, whose: str) -> str:
    """The password from --password, from standard input, or from a prompt (asked twice)."""
    if args.password is not None:
        return str(args.password)
    if args.password_stdin:
        # One line, as `docker login --password-stdin` reads it; the newline is not part of it.
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {whose}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    else:
        raise ValueError("give --password, --password-stdin, or run in a terminal for a prompt")
    if not password:
        raise ValueError("empty password")
    return password
