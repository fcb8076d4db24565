"""IMAP IDLE (RFC 2177, RFC 9051 6.3.13): changes are pushed while the client idles.

Tested with a raw client: imapclient's ``idle_check`` can fail on a partial line."""

from __future__ import annotations

import time

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    RawImap,
    append,
    deliver,
    imap,
    message,
    require_capability,
    scratch_folder,
    tagged,
    token,
)


def idle(raw: RawImap) -> None:
    raw.send(b"i1 IDLE\r\n")
    first = raw.line()
    assert first.startswith(b"+"), f"no continuation request for IDLE: {first!r}"


def wait_line(raw: RawImap, suffix: bytes, timeout: float) -> list[bytes]:
    """Lines read until one ends with ``suffix`` (within ``timeout`` seconds)."""
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = raw.line(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(line)
        if line.endswith(suffix):
            return seen
    raise AssertionError(f"no line ending {suffix!r} within {timeout}s; got {seen}")


def done(raw: RawImap) -> list[bytes]:
    raw.send(b"DONE\r\n")
    return raw.until(b"i1")


@requirement(
    "RFC2177", "3", "MUST", "IDLE gets a continuation request; DONE ends it with a tagged OK"
)
def test_idle_and_done(target: Target) -> None:
    with imap(target) as client:
        require_capability(client, "IDLE")
    raw = RawImap(target)
    try:
        raw.login(target.account)
        raw.command("SELECT INBOX")
        idle(raw)
        assert tagged(done(raw)).startswith(b"OK")
        assert tagged(raw.command("NOOP")).startswith(b"OK")
    finally:
        raw.close()


@requirement(
    "RFC2177",
    "3",
    "MUST",
    "mail delivered while a client idles is announced at once with EXISTS",
)
def test_idle_announces_delivered_mail(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        raw.command("SELECT INBOX")
        idle(raw)
        tok = token()
        started = time.monotonic()
        deliver(target, target.account.address, message(tok, to=target.account.address))
        wait_line(raw, b" EXISTS\r\n", timeout=10.0)
        assert time.monotonic() - started < 10.0
        assert tagged(done(raw)).startswith(b"OK")
        lines = raw.command(f"SEARCH HEADER Message-ID {tok}")
        assert any(line.startswith((b"* SEARCH ", b"* ESEARCH")) for line in lines), lines
    finally:
        raw.close()


@requirement(
    "RFC2177",
    "3",
    "MUST",
    "flag changes and expunges by another session are reported during IDLE",
)
def test_idle_reports_other_sessions_changes(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, message(token()))
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            idle(raw)
            client.select_folder(folder)
            client.add_flags([uid], [b"\\Flagged"])
            lines = wait_line(raw, b")\r\n", timeout=10.0)
            assert any(b" FETCH (" in x and b"\\Flagged" in x for x in lines), lines
            client.add_flags([uid], [b"\\Deleted"])
            client.expunge()
            wait_line(raw, b"* 1 EXPUNGE\r\n", timeout=10.0)
            assert tagged(done(raw)).startswith(b"OK")
        finally:
            raw.close()
