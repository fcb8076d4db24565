"""`mailspec cos create|set|assign|show|list|delete`: classes of service, bundles of quota,
rate limits, largest message and permissions for domains and accounts."""

from __future__ import annotations

import argparse

from reference.cli.common import Subparsers, admin, group, leaf, written_in
from reference.directory import ClassOfService

__all__ = ["register"]

_NUMBERS = {"quota_bytes": "--quota-bytes", "quota_messages": "--quota-messages"}
_NUMBERS |= {"max_message_size": "--max-size"}
_RATES = {"rate_recipients": "--rate-recipients", "rate_messages": "--rate-messages"}
_RATES |= {"rate_bytes": "--rate-bytes"}
_FLAGS = {"forward_remote": "forward-remote", "lists": "lists", "external": "external"}


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (and --unset ones back to the platform's)."""
    out: dict[str, object] = {}
    for name in (*_NUMBERS, *_RATES, *_FLAGS):
        value = getattr(args, name)
        if value is not None:
            out[name] = value
    for name in getattr(args, "unset", None) or ():
        out[name.replace("-", "_")] = None
    return out


def _show(cos: ClassOfService) -> None:
    print(f"class {cos.name}")
    for name in (*_NUMBERS, *_RATES):
        value = getattr(cos, name)
        print(f"  {name:<17} {'(platform)' if value is None else value}")
    for name in _FLAGS:
        print(f"  {name:<17} {'allowed' if getattr(cos, name) else 'refused'}")


def cmd_cos_create(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        cos = a.create_cos(args.name, **_settings(args))
        print(f"class of service {cos.name} created {written_in(args)}")
    return 0


def cmd_cos_set(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        cos = a.set_cos(args.name, **_settings(args))
        print(f"class of service {cos.name} changed {written_in(args)}")
    return 0


def cmd_cos_assign(args: argparse.Namespace) -> int:
    if bool(args.off) == bool(args.name):
        raise ValueError("cos assign: give a class's NAME, or --off")
    with admin(args, writes=True) as a:
        target = a.assign_cos(args.target, None if args.off else args.name)
        what = "no class of its own" if args.off else f"class {args.name}"
        print(f"{target}: {what} {written_in(args)}")
    return 0


def cmd_cos_show(args: argparse.Namespace) -> int:
    with admin(args) as a:
        if "@" in args.what:
            cos, source = a.effective_cos(args.what)
            if cos is None:
                print(f"{args.what}: no class of service (the platform's settings)")
                return 0
            print(f"{args.what}: class {cos.name} (from its {source})")
        else:
            cos = a.class_of_service(args.what)
        _show(cos)
    return 0


def cmd_cos_list(args: argparse.Namespace) -> int:
    with admin(args) as a:
        given: dict[str, list[str]] = {}
        for scope, name in a.cos_assignments():
            given.setdefault(name, []).append(scope)
        for cos in a.classes_of_service():
            print(f"{cos.name}\t{', '.join(given.get(cos.name, [])) or '-'}")
    return 0


def cmd_cos_delete(args: argparse.Namespace) -> int:
    with admin(args, writes=True) as a:
        print(f"class of service {a.delete_cos(args.name)} deleted {written_in(args)}")
    return 0


def _options(p: argparse.ArgumentParser) -> None:
    for name, flag in _NUMBERS.items():
        p.add_argument(flag, dest=name, type=int, metavar="N", help="0: unlimited")
    for name, flag in _RATES.items():
        p.add_argument(flag, dest=name, metavar="COUNT/DURATION", help="e.g. 100/1h; none")
    for name, flag in _FLAGS.items():
        p.add_argument(
            f"--{flag}",
            dest=name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"allow (or --no-{flag}: refuse) {flag.replace('-', ' ')}",
        )


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """Add the cos commands to the ``mailspec`` command line."""
    csub = group(sub, "cos", parents, "manage classes of service (account > domain > default)")
    q = leaf(
        csub, "create", parents, "create a class; unset limits are the platform's", cmd_cos_create
    )
    q.add_argument("name", help='its name; "default" applies to accounts without a class')
    _options(q)
    q = leaf(csub, "set", parents, "change a class's settings", cmd_cos_set)
    q.add_argument("name", help="the class")
    _options(q)
    q.add_argument(
        "--unset",
        action="append",
        metavar="SETTING",
        choices=[n.replace("_", "-") for n in (*_NUMBERS, *_RATES)],
        help="back to the platform's setting (e.g. quota-bytes)",
    )
    q = leaf(csub, "assign", parents, "give an account or a domain a class", cmd_cos_assign)
    q.add_argument("target", help="an account's address or one of our domains")
    q.add_argument("name", nargs="?", help="the class")
    q.add_argument("--off", action="store_true", help="take the class away")
    q = leaf(csub, "show", parents, "a class's settings, or the class an account has", cmd_cos_show)
    q.add_argument("what", help="a class's name, or an account's address")
    leaf(csub, "list", parents, "the classes and who has each", cmd_cos_list)
    q = leaf(csub, "delete", parents, "delete a class no one has", cmd_cos_delete)
    q.add_argument("name", help="the class")
