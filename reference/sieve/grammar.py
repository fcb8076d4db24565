"""Sieve scripts parsed by sievelib's validating parser into our own immutable tree.

sievelib (RFC 5228 grammar and most extensions' arguments) knows neither ``ereject``,
``spamtest``, the variables ``string`` test nor the subaddress address parts; they are
registered here through its own extension points. The interpreter never sees sievelib's
objects: :func:`compile_script` turns them into :class:`Node` values.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sievelib import commands as sc
from sievelib.parser import Parser

__all__ = ["EXTENSIONS", "MAX_SCRIPT_SIZE", "Node", "Script", "SieveError", "compile_script"]

# What the interpreter implements: a script requiring anything else fails (RFC 5228 3.2).
EXTENSIONS = (
    "fileinto",
    "reject",
    "ereject",
    "encoded-character",
    "envelope",
    "variables",
    "imap4flags",
    "copy",
    "body",
    "subaddress",
    "spamtest",
    "spamtestplus",
    "relational",
    "comparator-i;ascii-numeric",
    "date",
    "vacation",
)
MAX_SCRIPT_SIZE = 64 * 1024  # bytes; ManageSieve and the CLI refuse larger scripts

Value = str | int | tuple[str, ...] | None


class SieveError(ValueError):
    """A script that does not compile; the message names the line."""


@dataclass(frozen=True)
class Node:
    """One command or test: tag and positional arguments by sievelib's names, values
    unquoted; ``extras`` holds a tag's own argument (``:days 7`` -> ``extras["days"] = 7``)."""

    name: str
    args: Mapping[str, Value] = field(default_factory=dict)
    extras: Mapping[str, Value] = field(default_factory=dict)
    tests: tuple[Node, ...] = ()
    block: tuple[Node, ...] = ()

    def text(self, name: str, default: str = "") -> str:
        value = self.args.get(name)
        return value if isinstance(value, str) else default

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.args.get(name)
        return as_list(value)

    def extra_strings(self, name: str) -> tuple[str, ...]:
        return as_list(self.extras.get(name))


def as_list(value: Value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, tuple):
        return value
    return (str(value),)


@dataclass(frozen=True)
class Script:
    """A compiled script: its commands and the extensions it requires."""

    commands: tuple[Node, ...]
    requires: frozenset[str]
    source: str


# -- sievelib extended --------------------------------------------------------------------


class ErejectCommand(sc.ActionCommand):  # type: ignore[misc]
    """RFC 5429 2.1: ereject, a rejection at the protocol level where it can be."""

    extension = "ereject"
    args_definition = [{"name": "text", "type": ["string"], "required": True}]


class SpamtestCommand(sc.TestCommand):  # type: ignore[misc]
    """RFC 5235: spamtest [":percent"] [COMPARATOR] [MATCH-TYPE] <value: string>."""

    extension = "spamtest"
    args_definition = [
        {
            "name": "percent",
            "type": ["tag"],
            "values": [],
            "extension_values": {":percent": "spamtestplus"},
            "required": False,
        },
        sc.comparator,
        sc.match_type,
        {"name": "value", "type": ["string"], "required": True},
    ]


class StringCommand(sc.TestCommand):  # type: ignore[misc]
    """RFC 5229 5: string [MATCH-TYPE] [COMPARATOR] <source: string-list> <key-list>."""

    extension = "variables"
    args_definition = [
        sc.comparator,
        sc.match_type,
        {"name": "source", "type": ["string", "stringlist"], "required": True},
        {"name": "key-list", "type": ["string", "stringlist"], "required": True},
    ]


class RequireCommand(sc.RequireCommand):  # type: ignore[misc]
    """RFC 5235 3.2: requiring spamtestplus makes spamtest available too."""

    def complete_cb(self) -> None:
        super().complete_cb()
        loaded = sc.parser_state.loaded_extensions
        if '"spamtestplus"' in str(self.arguments["capabilities"]) and "spamtest" not in loaded:
            loaded.append("spamtest")


_extended = threading.Lock()
_ready = False


def _extend_sievelib() -> None:
    """Once per process: our commands, and argument values sievelib does not list."""
    global _ready
    with _extended:
        if _ready:
            return
        sc.add_commands([ErejectCommand, SpamtestCommand, StringCommand, RequireCommand])
        # RFC 5233: the subaddress address parts; RFC 4790 9.1: the numeric comparator.
        sc.address_part.setdefault("extension_values", {}).update(
            {":user": "subaddress", ":detail": "subaddress"}
        )
        values = sc.comparator["extra_arg"]["values"]
        if '"i;ascii-numeric"' not in values:
            values.append('"i;ascii-numeric"')
        _ready = True


# -- compiling ---------------------------------------------------------------------------

_NUMBER = re.compile(r"([0-9]+)([KMGkmg]?)")
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _unquote(raw: str) -> str:
    if raw.startswith("text:"):
        # RFC 5228 2.4.2: a multi-line string ends at a line holding a single dot, and a
        # line starting with a dot has one removed.
        text = raw.replace("\r\n", "\n")
        body = text.split("\n", 1)[1] if "\n" in text else ""
        body = body[: body.rfind(".")] if body.rstrip().endswith(".") else body
        lines = body.split("\n")
        return "\n".join(line[1:] if line.startswith("..") else line for line in lines)
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
    return raw


def _value(raw: Any) -> Value:
    if isinstance(raw, list):
        return tuple(_unquote(str(v)) for v in raw)
    if isinstance(raw, str):
        m = _NUMBER.fullmatch(raw)
        if m:
            return int(m.group(1)) * _SCALE[m.group(2).lower()]
        return _unquote(raw)
    return None


def _node(cmd: Any) -> Node:
    args: dict[str, Value] = {}
    tests: list[Node] = []
    for name, raw in cmd.arguments.items():
        if isinstance(raw, sc.Command):
            tests.append(_node(raw))
        elif isinstance(raw, list) and raw and isinstance(raw[0], sc.Command):
            tests.extend(_node(t) for t in raw)
        else:
            args[name] = _value(raw)
    extras = {name: _value(raw) for name, raw in cmd.extra_arguments.items()}
    return Node(
        cmd.name,
        args,
        extras,
        tuple(tests),
        tuple(_node(child) for child in cmd.children),
    )


_ENCODED = re.compile(r"\$\{(hex|unicode):([0-9a-fA-F \t\r\n]*)\}", re.IGNORECASE)


def _encoded(text: str) -> str:
    """RFC 5228 2.4.2.4: ${hex:...} octets (UTF-8) and ${unicode:...} code points."""

    def sub(m: re.Match[str]) -> str:
        digits = m.group(2).split()
        try:
            if m.group(1).lower() == "hex":
                return bytes(int(d, 16) for d in digits).decode("utf-8")
            return "".join(chr(int(d, 16)) for d in digits)
        except (ValueError, OverflowError):  # not UTF-8, or past U+10FFFF
            raise SieveError(f"bad encoded character {m.group(0)!r}") from None

    return _ENCODED.sub(sub, text)


def _decode_node(node: Node) -> Node:
    def value(v: Value) -> Value:
        if isinstance(v, str):
            return _encoded(v)
        if isinstance(v, tuple):
            return tuple(_encoded(x) for x in v)
        return v

    return Node(
        node.name,
        {k: value(v) for k, v in node.args.items()},
        {k: value(v) for k, v in node.extras.items()},
        tuple(_decode_node(t) for t in node.tests),
        tuple(_decode_node(b) for b in node.block),
    )


def compile_script(source: str | bytes, *, max_size: int = MAX_SCRIPT_SIZE) -> Script:
    """Parse and validate a script; :class:`SieveError` says why it is refused."""
    raw = source.encode("utf-8") if isinstance(source, str) else source
    if len(raw) > max_size:
        raise SieveError(f"script too large: {len(raw)} bytes, at most {max_size}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SieveError("script is not UTF-8 (RFC 5228 2.2)") from None
    _extend_sievelib()
    parser = Parser()
    try:
        ok = parser.parse(raw)
    except Exception as e:  # sievelib raises a few bare errors on odd input
        raise SieveError(f"syntax error: {e}") from None
    if not ok:
        raise SieveError(str(parser.error))
    commands = tuple(_node(c) for c in parser.result)
    requires: set[str] = set()
    for node in commands:
        if node.name == "require":
            requires.update(node.strings("capabilities"))
    # RFC 5228 3.2: a script requiring an extension we do not have must fail.
    unknown = sorted(requires - set(EXTENSIONS))
    if unknown:
        raise SieveError(f"unsupported extension: {', '.join(unknown)}")
    if "spamtestplus" in requires:
        requires.add("spamtest")
    if "encoded-character" in requires:
        commands = tuple(_decode_node(n) for n in commands)
    return Script(commands, frozenset(requires), text)
