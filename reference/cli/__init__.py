"""The `mailspec` command line: one parser, each family of commands in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from reference import __version__
from reference.cli.common import global_options
from reference.config import ConfigError
from reference.credentials import TemporarilyUnavailable

__all__ = ["build_parser", "main"]

# Each module adds its commands with register(sub, parents); the order is the help's order.
# The names are what a module adds, so that one that cannot be imported still has its
# commands, saying why they cannot run.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reference.cli.server", ("serve", "config")),
    ("reference.cli.queue", ("queue",)),
    ("reference.cli.accounts", ("domain", "user", "alias")),
    ("reference.cli.access", ("access",)),
    ("reference.cli.cos", ("cos",)),
    ("reference.cli.lists", ("list", "archive")),
    ("reference.cli.tokens", ("token",)),
    ("reference.cli.admins", ("admin",)),
    ("fakes.dns.cli", ("fake-dns",)),
    ("fakes.mx.cli", ("fake-mx",)),
    ("conformance.cli", ("check",)),
    ("reference.cli.auth", ("dkim", "dns", "auth", "dmarc")),
    ("reference.cluster", ("cluster",)),
    ("reference.cli.spam", ("spam",)),
    ("reference.cli.sieve", ("sieve", "vacation")),
    ("reference.cli.usage", ("usage",)),
)


def _unavailable(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    names: tuple[str, ...],
    error: ModuleNotFoundError,
) -> None:
    why = f"unavailable here: {error} (reinstall mailspec with its dependencies: pip install .)"

    def say(args: argparse.Namespace) -> int:
        print(f"mailspec {args.command}: {why}", file=sys.stderr)
        return 2

    for name in names:
        # No option prefix and no --help: whatever follows the name is taken, and refused.
        p = sub.add_parser(name, help=why, add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=say)


def build_parser(
    commands: tuple[tuple[str, tuple[str, ...]], ...] = COMMANDS,
) -> argparse.ArgumentParser:
    common = [global_options(top=False)]
    parser = argparse.ArgumentParser(
        prog="mailspec",
        description="The executable specification of a hosted mail platform. The global "
        "options go before or after the command; given in both places, the one after it wins.",
        parents=[global_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"mailspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname, names in commands:
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            # A command whose module (or a library it needs) is missing says so when run,
            # instead of vanishing from the command line.
            _unavailable(sub, names, e)
            continue
        module.register(sub, common)
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


def main(
    argv: list[str] | None = None,
    commands: tuple[tuple[str, tuple[str, ...]], ...] = COMMANDS,
) -> int:
    parser = build_parser(commands)
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
    except TemporarilyUnavailable as e:  # the directory's database server is down
        print(f"mailspec: {e}; try again later", file=sys.stderr)
        return 75  # EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130
    return rc
