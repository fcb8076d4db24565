"""`mailspec admin create|passwd|list|delete`: platform administrators' panel logins."""

from __future__ import annotations

import argparse
import time

from reference.cli.common import (
    Subparsers,
    admin,
    group,
    leaf,
    password_from,
    password_options,
    written_in,
)


def cmd_admin_create(args: argparse.Namespace) -> int:
    password = password_from(args, args.name)
    with admin(args, writes=True) as a:
        name = a.create_admin(args.name, password)
    print(f"administrator {name} created {written_in(args)}: log into the panel as {name}")
    return 0


def cmd_admin_passwd(args: argparse.Namespace) -> int:
    password = password_from(args, args.name)
    with admin(args, writes=True) as a:
        name = a.set_admin_password(args.name, password)
    print(f"password of administrator {name} changed {written_in(args)}")
    return 0


def cmd_admin_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        for name, created in a.admins():
            made = time.strftime("%Y-%m-%d %H:%M", time.gmtime(created))
            print(f"{name:<30}  made {made} UTC")
    return 0


def cmd_admin_delete(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        name = a.delete_admin(args.name)
    print(f"administrator {name} deleted {written_in(args)}")
    return 0


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the admin commands to the ``mailspec`` command line."""
    asub = group(sub, "admin", parents, "platform administrators who log into the panel")
    q = leaf(asub, "create", parents, "add an administrator with a password", cmd_admin_create)
    q.add_argument("name", help="the name to log in with (a-z, 0-9, '.', '_', '-')")
    password_options(q)
    q = leaf(asub, "passwd", parents, "change an administrator's password", cmd_admin_passwd)
    q.add_argument("name", help="the administrator's name")
    password_options(q)
    leaf(asub, "list", parents, "list administrators", cmd_admin_list)
    q = leaf(asub, "delete", parents, "remove an administrator", cmd_admin_delete)
    q.add_argument("name", help="the administrator's name")
