"""The log formatter: one line per event, every control character a visible escape."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from reference.log import FORMAT, EscapingFormatter, escape, event


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the formatter that ``log.setup`` installs, into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter(FORMAT))
    logger = logging.getLogger("mailspec.test-log")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def test_escape() -> None:
    assert escape("a\x00b\x1b[31mc\x7f") == "a\\x00b\\x1b[31mc\\x7f"
    assert escape("one\r\ntwo\tthree") == "one\\r\\ntwo\\tthree"
    # C1 controls (CSI), line separators, and surrogateescape's lone surrogates.
    assert escape("\x9b\u2028\udcff") == "\\x9b\\u2028\\udcff"
    assert escape("plain ü and \\x00 as typed") == "plain ü and \\x00 as typed"


def test_a_message_with_controls_is_one_escaped_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning("client said %r then %s", "x", "EHLO a\x00b\r\nMAIL FROM:<forged>\x1b[2J")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "EHLO a\\x00b\\r\\nMAIL FROM:<forged>\\x1b[2J" in text
    assert "\x00" not in text and "\x1b" not in text and "\r" not in text


def test_an_event_value_is_quoted_and_escaped(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    event(logger, "mail.refused", sender="a\x00b@client.test", helo='x "y"\\z', ok="plain@x")
    line = out.getvalue()
    assert line.count("\n") == 1
    # A real NUL comes out as \x00; a backslash the peer typed comes out doubled.
    assert 'sender="a\\x00b@client.test"' in line
    assert 'helo="x \\"y\\"\\\\z"' in line
    assert "ok=plain@x" in line


def test_a_trailing_newline_is_not_a_bare_value(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    # "$" matches before a final newline: a value "ok\n" must not pass as a bare one.
    logger, out = captured
    event(logger, "x", v="ok\n")
    assert 'v="ok\\n"' in out.getvalue()


def test_a_traceback_stays_in_its_event_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    try:
        raise ValueError("bad input 'a\x00b'\nsecond line")
    except ValueError:
        logger.exception("smtp.exception")
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "Traceback (most recent call last):\\n" in text
    assert "ValueError: bad input 'a\\x00b'\\nsecond line" in text


def test_setup_installs_the_escaping_formatter() -> None:
    # In a fresh interpreter, as `mailspec serve` does: whatever logger writes a NUL, the
    # stream gets a visible escape.
    code = (
        "import logging; from reference import log; log.setup('info'); "
        "logging.getLogger('mail.log').warning('peer sent %s', 'a\\x00b\\x1b'); "
        "log.event(logging.getLogger('mailspec.smtp'), 'auth', user='u\\x00\\r\\nforged')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    err = run.stderr
    assert b"\x00" not in err and b"\x1b" not in err
    lines = err.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("WARNING mail.log peer sent a\\x00b\\x1b")
    assert lines[1].endswith('INFO mailspec.smtp event=auth user="u\\x00\\r\\nforged"')
