"""The ManageSieve command parser: bytes in, a command or an error out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reference.managesieve.parser import Command, ParseError, literal_size, parse_command, string


def test_atoms_quoted_strings_and_literals() -> None:
    assert parse_command(b'putscript "a \\"b\\"" {6+}\r\nkeep;\n\r\n') == Command(
        "PUTSCRIPT", ('a "b"', "keep;\n")
    )
    assert parse_command(b'HAVESPACE "x" 1024\r\n') == Command("HAVESPACE", ("x", "1024"))
    assert parse_command(b"LOGOUT\r\n") == Command("LOGOUT")


def test_literal_announced_at_the_end_of_a_line() -> None:
    assert literal_size(b'PUTSCRIPT "x" {12+}\r\n') == 12
    assert literal_size(b'PUTSCRIPT "x" {12}\r\n') == 12
    assert literal_size(b'PUTSCRIPT "{12+}"\r\n') is None


def test_errors() -> None:
    for bad in (b"", b'X "open\r\n', b'X "\\n"\r\n', b"X {9+}\r\nshort\r\n", b"X @\r\n"):
        assert isinstance(parse_command(bad), ParseError), bad


def test_strings_render_back() -> None:
    for text in ("plain", 'with "quotes" \\', "two\r\nlines", "ünï"):
        assert parse_command(b"X " + string(text) + b"\r\n") == Command("X", (text,))


@given(st.binary(max_size=200))
def test_no_input_crashes_the_parser(data: bytes) -> None:
    assert isinstance(parse_command(data), Command | ParseError)
