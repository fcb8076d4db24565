"""The import graph of the reference runs one way: entry points -> composition root ->
front ends -> policy and delivery -> mechanisms -> stores -> the mail values and plumbing.

A package may import the packages of the floors below its own, never one beside it or
above it; no module imports another's private names; the product never imports the test
fakes or the suite, except from the command line's entry points.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "reference"

# Floor by floor, from the ground up (the README's architecture section draws the same).
FLOORS: list[set[str]] = [
    # plumbing (and the node's metrics registry)
    {"mail", "values", "clock", "log", "sqlite", "tls", "credentials", "faults", "metrics"},
    {"refusal"},  # a refusal whose message a front end can translate
    # config, stores, line I/O, Sieve scripts
    {"config", "state", "directory", "spool", "mailbox", "stream", "sieve", "usage"},
    {"dns", "auth"},  # the resolver; SPF, DKIM, DMARC, ARC
    {"scan"},  # content scanners (spam rules use the public suffix list of auth)
    {"policy", "delivery"},  # checks per stage; the queue runner, local and remote
    # what an operator and a user do (domains, accounts, queue, forwards, out-of-office,
    # Sieve, spam, branding): the one layer the CLI, the API and the panel call
    {"service"},
    {"smtp", "imap", "pop3", "managesieve", "assembly"},  # protocol front ends; the check chain
    {"web"},  # the control plane: the admin API, /metrics, health (reads the front ends')
    {"workers"},  # a node's worker processes: shared sockets, the supervisor
    {"app"},  # the composition root
    {"cli", "cluster", "testing"},  # entry points, and the harness the suite starts
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
ENTRY_POINTS = {"cli", "cluster"}
# The harness the suite and the tests start a reference with: it brings the fake internet.
WITH_FAKES = ENTRY_POINTS | {"testing"}


def _room(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) for every import of a module, at any depth of the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def test_every_room_is_on_a_floor() -> None:
    rooms = {_room(p) for p in MODULES} - {"__init__"}
    assert rooms - set(FLOOR) == set(), "a new package or module needs its floor here"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_run_down_the_floors(path: Path) -> None:
    here = _room(path)
    wrong = []
    for line, module, _ in _imports(path):
        parts = module.split(".")
        if parts[0] in ("fakes", "conformance") and here not in WITH_FAKES:
            wrong.append(f"line {line}: {module} (the product never imports the fakes or suite)")
        if parts[0] != "reference" or len(parts) < 2:
            continue
        there = parts[1]
        if there == here or there not in FLOOR:
            continue  # its own package, or reference/__init__ (the version)
        if FLOOR[there] >= FLOOR[here]:
            wrong.append(f"line {line}: {module} (floor {FLOOR[there]} from floor {FLOOR[here]})")
    assert wrong == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_private_names_across_modules(path: Path) -> None:
    own = ".".join(("reference", *path.relative_to(ROOT).with_suffix("").parts))
    private = [
        f"line {line}: {', '.join(n for n in names if n.startswith('_'))} from {module}"
        for line, module, names in _imports(path)
        if module.startswith("reference.")
        and module != own
        and any(n.startswith("_") and n != "__version__" for n in names)
    ]
    assert private == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_private_names_of_libraries(path: Path) -> None:
    # A library's private names change in any release without notice: the reference builds
    # on what libraries document.
    private = [
        f"line {line}: {', '.join(n for n in names if n.startswith('_'))} from {module}"
        for line, module, names in _imports(path)
        if module.split(".")[0] not in ("reference", "__future__")
        and any(n.startswith("_") for n in names)
    ]
    assert private == []


def test_the_smtp_session_owns_its_command_loop() -> None:
    # aiosmtpd's SMTP class bends to the platform's rules (strict line endings, BDAT, DSN,
    # control characters, enhanced codes, async AUTH, PROXY after the greeting) only through
    # about fifteen of its private members, which any release may change. The reference
    # reads its own commands (reference/smtp/session.py); aiosmtpd serves only the fake MXs
    # and the benchmark's ceiling.
    users = [
        f"{path.relative_to(ROOT.parent)}:{line} {module}"
        for path in MODULES
        for line, module, _ in _imports(path)
        if module.split(".")[0] == "aiosmtpd"
    ]
    assert users == []
