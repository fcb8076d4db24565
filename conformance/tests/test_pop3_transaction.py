"""POP3 TRANSACTION and UPDATE states: STAT, LIST, UIDL, RETR, TOP, DELE, RSET and QUIT
(RFC 1939). Messages reach the test account (the target's second account, or its only one)
by SMTP."""

from __future__ import annotations

import poplib

import pytest

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    message,
    pop3_deliver,
    pop3_find,
    pop3_session,
    token,
)


@pytest.fixture(scope="module")
def two(target: Target) -> tuple[str, str]:
    """Two messages delivered once for the read-only tests of this module."""
    first, second = token(), token()
    to = target.mailbox_account.address
    pop3_deliver(target, first, message(first, to=to, body=b".dot first\r\nline 2\r\nline 3\r\n"))
    pop3_deliver(target, second, message(second, to=to))
    return first, second


@requirement(
    "RFC1939", "5", "MUST", "STAT answers +OK with the message count and the size in octets"
)
def test_stat(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        count, size = client.stat()
        sizes = [int(line.split()[1]) for line in client.list()[1]]
        assert count == len(sizes) >= 2 and size == sum(sizes)
        client.quit()


@requirement(
    "RFC1939", "5", "MUST", "LIST gives each message's number and size; LIST n one of them"
)
def test_list(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        listing = [line.split() for line in client.list()[1]]
        n = pop3_find(client, two[0])
        assert n is not None
        (size,) = [int(s) for m, s in listing if int(m) == n]
        one = client.list(n)
        assert one.split() == [b"+OK", b"%d" % n, b"%d" % size], one
        retr = client.retr(n)
        assert retr[2] >= size - 2 * len(retr[1]), "RETR octets disagree with LIST"
        with pytest.raises(poplib.error_proto):
            client.list(len(listing) + 1)
        client.quit()


@requirement(
    "RFC1939",
    "7",
    "MUST",
    "UIDL gives each message a unique id that stays the same across sessions",
)
def test_uidl(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        first = {line.split()[1] for line in client.uidl()[1]}
        n = pop3_find(client, two[0])
        assert n is not None
        one = client.uidl(n).split()[2]
        client.quit()
    assert len(first) >= 2
    with pop3_session(target) as client:
        again = {line.split()[1] for line in client.uidl()[1]}
        n = pop3_find(client, two[0])
        assert n is not None and client.uidl(n).split()[2] == one
        client.quit()
    assert first <= again
    assert all(0 < len(uid) <= 70 and all(0x21 <= c <= 0x7E for c in uid) for uid in first)


@requirement(
    "RFC1939",
    "3",
    "MUST",
    "multi-line responses byte-stuff lines that begin with '.' and end with '.'",
)
def test_retr_is_dot_stuffed(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        n = pop3_find(client, two[0])
        assert n is not None
        client._putcmd(f"RETR {n}")
        assert client._getresp().startswith(b"+OK")
        lines: list[bytes] = []
        while (line := client._getline()[0]) != b".":
            lines.append(line)
        assert b"..dot first" in lines, lines
        client.quit()


@requirement("RFC1939", "5", "MUST", "RETR returns the whole message")
def test_retr(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        n = pop3_find(client, two[1])
        assert n is not None
        lines = client.retr(n)[1]
        assert any(two[1].encode() in line for line in lines)
        assert lines[-1] == b"A conformance test message."
        client.quit()


@requirement("RFC1939", "7", "MUST", "TOP n k returns the header, the blank line and k body lines")
def test_top(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        n = pop3_find(client, two[0])
        assert n is not None
        lines = client.top(n, 2)[1]
        blank = lines.index(b"")
        assert lines[blank + 1 :] == [b".dot first", b"line 2"], lines
        assert lines[0] and all(b":" in x or x[:1] in b" \t" for x in lines[:blank])
        client.quit()


@requirement(
    "RFC1939",
    "5",
    "MUST",
    "a deleted message cannot be read or listed, and RSET undeletes it",
)
def test_dele_and_rset(target: Target, two: tuple[str, str]) -> None:
    with pop3_session(target) as client:
        n = pop3_find(client, two[1])
        assert n is not None
        count = client.stat()[0]
        assert client.dele(n).startswith(b"+OK")
        with pytest.raises(poplib.error_proto):
            client.retr(n)
        with pytest.raises(poplib.error_proto):
            client.dele(n)
        assert client.stat()[0] == count - 1
        assert n not in [int(line.split()[0]) for line in client.list()[1]]
        assert client.rset().startswith(b"+OK")
        assert client.stat()[0] == count
        client.quit()


@requirement(
    "RFC1939",
    "6",
    "MUST",
    "QUIT enters UPDATE and removes the messages marked as deleted",
)
def test_quit_removes_deleted(target: Target) -> None:
    tok = token()
    pop3_deliver(target, tok)
    with pop3_session(target) as client:
        n = pop3_find(client, tok)
        assert n is not None
        client.dele(n)
        assert client.quit().startswith(b"+OK")
    with pop3_session(target) as client:
        assert pop3_find(client, tok) is None
        client.quit()


@requirement(
    "RFC1939",
    "6",
    "MUST",
    "a session that ends without QUIT removes nothing (no UPDATE)",
)
def test_dropped_session_removes_nothing(target: Target) -> None:
    tok = token()
    pop3_deliver(target, tok)
    with pop3_session(target) as client:
        n = pop3_find(client, tok)
        assert n is not None
        client.dele(n)
        client.close()  # no QUIT
    for _ in range(100):  # the server may still be tearing the session down
        try:
            with pop3_session(target) as client:
                assert pop3_find(client, tok) is not None
                client.quit()
            break
        except poplib.error_proto as e:
            if b"IN-USE" not in e.args[0]:
                raise
    else:
        raise AssertionError("the maildrop stayed locked after the connection closed")
