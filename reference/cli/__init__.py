"""The `mailspec` command line: one parser, each family of commands in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from reference import __version__
from reference.cli.common import global_options
from reference.config import ConfigError

__all__ = ["build_parser", "main"]

# Each module adds its commands with register(sub, parents); the order is the help's order.
_COMMANDS = (
    "reference.cli.server",
    "reference.cli.queue",
    "reference.cli.accounts",
    "fakes.dns.cli",
    "fakes.mx.cli",
    "conformance.cli",
    "reference.cli.auth",
    "reference.cluster",
    "reference.cli.spam",
)


def build_parser() -> argparse.ArgumentParser:
    common = [global_options(top=False)]
    parser = argparse.ArgumentParser(
        prog="mailspec",
        description="The executable specification of a hosted mail platform. The global "
        "options go before or after the command; given in both places, the one after it wins.",
        parents=[global_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"mailspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in _COMMANDS:
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
