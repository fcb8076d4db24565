"""Reply values: each named constant's digits agree with its class, and rendering is RFC 5321."""

from __future__ import annotations

import re

import pytest

from reference.mail import replies
from reference.mail.replies import DEFAULT_ENHANCED, Reply

CONSTANTS = {k: v for k, v in vars(replies).items() if isinstance(v, Reply)}


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constant_codes_agree(name: str) -> None:
    r = CONSTANTS[name]
    assert 200 <= r.code < 600
    # RFC 3463: the enhanced code's class is the basic code's first digit.
    assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", r.enhanced)
    assert r.enhanced[0] == str(r.code)[0]
    assert r.transient == (r.code // 100 == 4)
    assert r.permanent == (r.code // 100 == 5)
    assert r.text and "\r" not in r.text


def test_default_enhanced_codes_agree() -> None:
    for code, enh in DEFAULT_ENHANCED.items():
        assert enh[0] == str(code)[0]


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
