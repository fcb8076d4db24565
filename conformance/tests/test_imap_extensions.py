"""IMAP extensions: CATENATE (RFC 4469), COMPRESS=DEFLATE (RFC 4978), NOTIFY (RFC 5465) and
SPECIAL-USE on CREATE (RFC 6154); each applicable where the server advertises it."""

from __future__ import annotations

import contextlib
import re
import secrets
import time
import zlib
from collections.abc import Iterator

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    RawImap,
    append,
    imap,
    message,
    require_capability,
    scratch_folder,
    tagged,
    token,
)


@contextlib.contextmanager
def raw_session(target: Target, capability: str) -> Iterator[RawImap]:
    """A logged-in raw session, where the server advertises ``capability``."""
    with imap(target) as client:
        require_capability(client, capability)
    raw = RawImap(target)
    try:
        raw.login(target.account)
        yield raw
    finally:
        raw.close()


@requirement(
    "RFC4469",
    "5",
    "MUST",
    "APPEND CATENATE joins TEXT parts and IMAP URLs (a message's section, a partial of one)",
)
def test_catenate(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "CATENATE")
        uid = append(client, folder, message(token(), body=b"0123456789\r\n"))
        client.select_folder(folder)
        validity = client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        url = f"/{folder};UIDVALIDITY={validity}/;UID={uid}"
        raw = RawImap(target)
        try:
            raw.login(target.account)
            # A synchronizing literal: the server may refuse before it is sent.
            raw.send(
                f'c1 APPEND {folder} CATENATE (URL "{url}/;SECTION=HEADER" TEXT {{5}}\r\n'.encode()
            )
            assert raw.line().startswith(b"+")
            raw.send(f'new\r\n URL "{url}/;SECTION=TEXT/;PARTIAL=2.3")\r\n'.encode())
            lines = raw.until(b"c1")
            assert tagged(lines).startswith(b"OK"), lines
        finally:
            raw.close()
        client.select_folder(folder)
        newest = client.search(["ALL"])[-1]
        data = client.fetch([newest], [b"BODY.PEEK[]"])[newest][b"BODY[]"]
        header = client.fetch([uid], [b"BODY.PEEK[HEADER]"])[uid][b"BODY[HEADER]"]
        assert data == header + b"new\r\n234", data


@requirement(
    "RFC4469",
    "6",
    "MUST",
    "APPEND CATENATE with a URL naming no message is NO [BADURL] and stores nothing",
)
def test_catenate_bad_url(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "CATENATE")
        uid = append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f'APPEND {folder} CATENATE (URL "/{folder}/;UID={uid + 5}")')
            assert re.match(rb"NO \[BADURL", tagged(lines), re.IGNORECASE), lines
        finally:
            raw.close()
        client.select_folder(folder)
        assert client.search(["ALL"]) == [uid]


@requirement(
    "RFC6154",
    "3",
    "MUST",
    "CREATE with USE (\\Archive) makes a mailbox that LIST shows with that attribute",
)
def test_create_special_use(target: Target) -> None:
    name = f"conformance-{secrets.token_hex(4)}"
    with raw_session(target, "CREATE-SPECIAL-USE") as raw:
        try:
            assert tagged(raw.command(f"CREATE {name} (USE (\\Archive))")).startswith(b"OK")
            lines = raw.command(f'LIST "" {name}')
            listed = [x for x in lines if x.upper().startswith(b"* LIST")]
            assert len(listed) == 1 and b"\\Archive" in listed[0], lines
        finally:
            raw.command(f"DELETE {name}")


@requirement(
    "RFC4978",
    "3",
    "MUST",
    "After COMPRESS DEFLATE's OK, commands and responses travel as raw deflate both ways",
)
def test_compress_deflate(target: Target) -> None:
    with raw_session(target, "COMPRESS=DEFLATE") as raw:
        assert tagged(raw.command("COMPRESS DEFLATE")).startswith(b"OK")
        assert raw.buffer == b"", raw.buffer  # nothing may follow the OK uncompressed
        deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        raw.send(deflate.compress(b"z1 NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
        got = b""
        while not re.search(rb"(^|\n)z1 ", got):
            raw.sock.settimeout(target.timeout)
            chunk = raw.sock.recv(65536)
            assert chunk, f"connection closed; inflated so far {got!r}"
            got += inflate.decompress(chunk)
        assert re.search(rb"(^|\n)z1 OK", got), got


@requirement(
    "RFC5465",
    "5.2",
    "MUST",
    "After NOTIFY SET with MessageNew for a mailbox not selected, a message appended to it "
    "in another session is told as STATUS with the new MESSAGES and UIDNEXT",
)
def test_notify_message_new(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "NOTIFY")
        append(client, folder, message(token()))
        with raw_session(target, "NOTIFY") as raw:
            lines = raw.command(f"NOTIFY SET (MAILBOXES {folder} (MessageNew MessageExpunge))")
            assert tagged(lines).startswith(b"OK"), lines
            append(client, folder, message(token()))
            status: list[bytes] = []
            for _ in range(20):  # told with the next reply, or a moment later
                status += [x for x in raw.command("NOOP") if x.upper().startswith(b"* STATUS")]
                if status:
                    break
                time.sleep(0.1)
            assert status, "no STATUS after the append"
            items = dict(re.findall(rb"([A-Z]+) (\d+)", status[-1].upper()))
            assert items.get(b"MESSAGES") == b"2" and b"UIDNEXT" in items, status
