"""Reply values: each named constant's digits agree with its class, and rendering is RFC 5321."""

from __future__ import annotations

import re

import pytest

from reference.smtp import replies
from reference.smtp.replies import DEFAULT_ENHANCED, Reply

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
