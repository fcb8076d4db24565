"""What every command of the command line shares: the global options, the config, the directory."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from reference import config as config_mod
from reference.config import Config

if TYPE_CHECKING:
    from reference.directory import Directory
    from reference.mailbox import MailStore
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


@contextlib.contextmanager
def accounts_and_mail(args: argparse.Namespace) -> Iterator[tuple[Directory, MailStore]]:
    """The directory and the mailboxes of the configured data_dir (deleting accounts)."""
    from reference.app import mail_store
    from reference.clock import RealClock

    cfg = load_config(args)
    d = open_directory(cfg, writes=True)
    try:
        yield d, mail_store(cfg, d, RealClock())
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
