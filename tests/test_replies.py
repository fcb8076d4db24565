"""Reply values: each named constant's digits agree with its class, and rendering is RFC 5321."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from reference.mail import replies
from reference.mail.replies import Reply

CONSTANTS = {k: v for k, v in vars(replies).items() if isinstance(v, Reply)}


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constant_codes_agree(name: str) -> None:
    r = CONSTANTS[name]
    assert 200 <= r.code < 600
    if r.code // 100 == 3:
        assert r.enhanced == ""  # RFC 2034 3: intermediate replies carry none
    else:
        # RFC 3463: the enhanced code's class is the basic code's first digit.
        assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", r.enhanced)
        assert r.enhanced[0] == str(r.code)[0]
    assert r.transient == (r.code // 100 == 4)
    assert r.permanent == (r.code // 100 == 5)
    assert r.text and "\r" not in r.text


def _calls(path: Path) -> list[tuple[int, str]]:
    """(line, what) for each reply built or written out in place, outside the catalogue."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if name == "Reply":
            found.append((node.lineno, "Reply(...)"))
        first = node.args[0] if node.args else None
        if (
            # send_line writes the greeting, the EHLO lines and the AUTH challenges, which
            # are no fixed replies.
            name == "push"
            and isinstance(first, (ast.Constant, ast.JoinedStr))
            and not (isinstance(first, ast.Constant) and not str(first.value)[:3].isdigit())
        ):
            found.append((node.lineno, f"{name}(<literal reply>)"))
    return found


def test_every_reply_is_in_the_catalogue() -> None:
    # The catalogue is every reply the reference sends, so its test covers them all: no
    # module builds a Reply or pushes a reply string of its own.
    root = Path(replies.__file__).resolve().parent.parent
    outside = {
        f"{path.relative_to(root)}:{line} {what}"
        for path in root.rglob("*.py")
        if path != Path(replies.__file__).resolve()
        for line, what in _calls(path)
    }
    assert outside == set()


def test_placeholders_are_filled_by_format() -> None:
    r = replies.GREYLISTED.format(wait=300)
    assert (r.code, r.enhanced, r.text) == (
        451,
        "4.7.1",
        "Greylisted, please try again in 300 seconds",
    )
    assert "{" not in str(replies.DMARC_REJECTED.format(domain="bank.example"))


def test_multiline_rendering() -> None:
    assert str(Reply(250, "2.0.0", "a\nb")) == "250-2.0.0 a\r\n250 2.0.0 b"
    assert str(Reply(220, "", "x\ny")) == "220-x\r\n220 y"
    assert Reply(452, "4.5.3", "x").transient
    assert Reply(550, "5.1.1", "x").permanent


def test_control_character_replies() -> None:
    # RFC 5321 4.2.2: 501 for arguments, 553 for a mailbox name; RFC 3463 3.2: X.1.7 is the
    # sender's address, X.1.3 the recipient's; X.5.4 invalid arguments, X.5.2 syntax.
    got = {
        name: (CONSTANTS[name].code, CONSTANTS[name].enhanced)
        for name in CONSTANTS
        if name.startswith("CONTROL_IN_")
    }
    assert got == {
        "CONTROL_IN_ARGUMENT": (501, "5.5.4"),
        "CONTROL_IN_SENDER": (553, "5.1.7"),
        "CONTROL_IN_RECIPIENT": (553, "5.1.3"),
        "CONTROL_IN_IDENTITY": (501, "5.5.2"),
    }
    # The same 553 as a recipient that the directory refuses for its syntax.
    assert replies.CONTROL_IN_RECIPIENT.code == replies.BAD_ADDRESS.code
