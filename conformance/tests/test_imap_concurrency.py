"""IMAP with several sessions on one mailbox: each session is told of the others' changes
in a form it can use (new keywords in FLAGS first, \\Recent for one session only, a FETCH
that names a message expunged elsewhere still answers) (RFC 3501, RFC 9051, RFC 2180,
RFC 5530). imaptest's stress mode checks the same things under load."""

from __future__ import annotations

import re
import secrets

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    RawImap,
    append,
    both_revisions,
    imap,
    message,
    scratch_folder,
    tagged,
    token,
)

_FLAGS = re.compile(rb"^\* FLAGS \(([^)]*)\)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def _session(target: Target, folder: str) -> tuple[RawImap, list[bytes]]:
    raw = RawImap(target)
    raw.login(target.account)
    lines = raw.command(f"SELECT {folder}")
    assert tagged(lines).startswith(b"OK"), lines
    return raw, lines


def _unannounced(lines: list[bytes], known: set[bytes]) -> list[bytes]:
    """Keywords shown by FETCH FLAGS that no earlier ``* FLAGS`` named (updates ``known``)."""
    bad: list[bytes] = []
    for line in lines:
        if (m := _FLAGS.match(line)) is not None:
            known.clear()
            known.update(m.group(1).split())
        elif line.startswith(b"* ") and b" FETCH " in line:
            for found in _FETCH_FLAGS.finditer(line):
                bad += [
                    f for f in found.group(1).split() if not f.startswith(b"\\") and f not in known
                ]
    return bad


@requirement(
    "RFC3501",
    "7.2.6",
    "MUST",
    "a keyword another session sets is named in an untagged FLAGS before a FETCH shows it",
)
def test_new_keyword_announced_before_use(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        keyword = f"$Conf{secrets.token_hex(3)}"
        a, lines = _session(target, folder)
        b, _ = _session(target, folder)
        try:
            known: set[bytes] = set()
            _unannounced(lines, known)
            assert tagged(b.command(f"STORE 1 +FLAGS ({keyword})")).startswith(b"OK")
            lines = a.command("NOOP") + a.command("FETCH 1 FLAGS")
            assert keyword.encode() in b"".join(lines), lines
            assert _unannounced(lines, known) == [], lines
        finally:
            a.close()
            b.close()


@requirement(
    "RFC3501",
    "2.3.2",
    "MUST",
    "\\Recent is given to one session: the first SELECT reports the new message RECENT,"
    " a second session's SELECT does not",
)
def test_recent_for_one_session(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        client.append(folder, message(token()))
        a, first = _session(target, folder)
        b, second = _session(target, folder)
        try:
            assert b"* 1 RECENT\r\n" in first, first
            assert b"* 0 RECENT\r\n" in second, second
            assert b"\\Recent" in a.command("FETCH 1 FLAGS")[0]
            assert b"\\Recent" not in b.command("FETCH 1 FLAGS")[0]
        finally:
            a.close()
            b.close()


@requirement(
    "RFC2180",
    "4.1.3",
    "SHOULD",
    "a FETCH naming a message another session expunged answers the others and completes OK"
    " (RFC 5530 EXPUNGEISSUED may say why one is missing)",
)
def test_fetch_with_message_expunged_elsewhere(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        for _ in range(2):
            append(client, folder, message(token()))
        a, _ = _session(target, folder)
        b, _ = _session(target, folder)
        try:
            assert tagged(b.command("STORE 1 +FLAGS.SILENT (\\Deleted)")).startswith(b"OK")
            assert tagged(b.command("EXPUNGE")).startswith(b"OK")
            lines = a.command("FETCH 1:2 (UID BODY.PEEK[])")
            assert tagged(lines).startswith(b"OK"), lines
            assert any(x.startswith(b"* 2 FETCH") for x in lines), lines
        finally:
            a.close()
            b.close()


_EXPUNGE = re.compile(rb"^\* \d+ EXPUNGE\r\n")


@requirement(
    "RFC3501",
    "7.4.1",
    "MUST",
    "an EXPUNGE made elsewhere is not reported while answering FETCH, STORE or SEARCH, "
    "only with a later command such as NOOP",
)
@requirement(
    "RFC9051",
    "7.5.1",
    "MUST",
    "an EXPUNGE made elsewhere is not reported while answering FETCH, STORE or SEARCH, "
    "only with a later command such as NOOP",
)
def test_no_expunge_during_fetch_store_search(target: Target) -> None:
    # "An EXPUNGE response MUST NOT be sent when no command is in progress, nor while
    # responding to a FETCH, STORE, or SEARCH command": the client's sequence numbers would
    # shift under the very answer that uses them (RFC 3501 5.5, 7.4.1).
    with imap(target) as other, scratch_folder(other) as folder:
        for _ in range(3):
            append(other, folder, message(token()))
        raw, _ = _session(target, folder)
        try:
            other.select_folder(folder)
            other.set_flags([other.search(["ALL"])[0]], [b"\\Deleted"])
            other.expunge()
            for command in ("FETCH 1:* (FLAGS)", "STORE 2 +FLAGS (\\Seen)", "SEARCH ALL"):
                lines = raw.command(command)
                assert tagged(lines).startswith((b"OK", b"NO")), f"{command}: {lines}"
                told = [line for line in lines if _EXPUNGE.match(line)]
                assert not told, f"EXPUNGE while answering {command}: {lines}"
            lines = raw.command("NOOP")
            assert [line for line in lines if _EXPUNGE.match(line)] == [b"* 1 EXPUNGE\r\n"], (
                f"NOOP after the expunge elsewhere: {lines}"
            )
        finally:
            raw.close()


@both_revisions(
    "5.5",
    "MUST",
    "commands pipelined in one write run in order: a FETCH after a STORE sees the stored flag",
)
def test_pipelined_commands_run_in_order(target: Target) -> None:
    # Sent together, STORE then FETCH and SEARCH of the same message are ambiguous unless
    # the server completes each in turn (RFC 3501 5.5: it MUST).
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        raw, _ = _session(target, folder)
        try:
            raw.send(
                b"p1 STORE 1 +FLAGS.SILENT (\\Flagged)\r\n"
                b"p2 FETCH 1 (FLAGS)\r\n"
                b"p3 STORE 1 -FLAGS.SILENT (\\Flagged)\r\n"
                b"p4 SEARCH UNFLAGGED\r\n"
            )
            lines = raw.until(b"p4")
            tags = [line.split(b" ", 1)[0] for line in lines if not line.startswith(b"*")]
            assert tags == [b"p1", b"p2", b"p3", b"p4"], f"tagged answers out of order: {lines}"
            # The untagged answers may come early; the last FETCH before p2 completes is its.
            until_p2 = lines[: next(i for i, x in enumerate(lines) if x.startswith(b"p2 "))]
            fetches = [x for x in until_p2 if b" FETCH " in x]
            assert fetches and b"\\Flagged" in fetches[-1], f"FETCH after STORE +FLAGS: {lines}"
            found = [x for x in lines if re.match(rb"\* (SEARCH 1|ESEARCH .*ALL 1)\r\n", x)]
            assert found, f"SEARCH after STORE -FLAGS: {lines}"
        finally:
            raw.close()
