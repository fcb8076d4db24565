"""IMAP SORT and THREAD (RFC 5256, RFC 5957), ESORT and CONTEXT=SEARCH (RFC 5267), PARTIAL
ranges (RFC 9394): each applicable where the server advertises the capability."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from contextlib import contextmanager

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    RawImap,
    imap,
    require_capability,
    scratch_folder,
    tagged,
    token,
)


def mail(date: str, subject: str, extra: bytes = b"", sender: str = "a@example.net") -> bytes:
    tok = token()
    return (
        (
            f"From: {sender}\r\nTo: <b@example.net>\r\nSubject: {subject}\r\n"
            f"Date: {date} +0000\r\nMessage-ID: <{tok}@example.net>\r\n"
        ).encode()
        + extra
        + b"\r\nbody\r\n"
    )


@contextmanager
def folder_with(target: Target, capability: str, messages: list[bytes]) -> Iterator[RawImap]:
    """A raw session with a scratch folder selected holding ``messages`` in that order (one
    day apart as internal dates), when the server advertises ``capability``."""
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, capability)
        for n, data in enumerate(messages):
            client.append(folder, data, msg_time=_day(n))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            assert tagged(raw.command(f"SELECT {folder}")).startswith(b"OK")
            yield raw
        finally:
            raw.close()


def _day(n: int) -> datetime.datetime:
    return datetime.datetime(2026, 1, 1 + n, 12, 0, tzinfo=datetime.UTC)


DAY1 = "Thu, 01 Jan 2026 10:00:00"


def sort_of(raw: RawImap, arguments: str) -> bytes:
    """The numbers of ``SORT arguments``' response."""
    return untagged(raw.command(f"SORT {arguments}"), b"SORT")


def untagged(lines: list[bytes], name: bytes) -> bytes:
    """The data of the one ``* NAME ...`` response (upper-cased name), without CRLF."""
    found = [
        x
        for x in lines
        if x.upper().startswith(b"* " + name + b" ") or x.upper() == b"* " + name + b"\r\n"
    ]
    assert len(found) == 1, lines
    return found[0][len(name) + 2 :].strip()


def esearch(lines: list[bytes]) -> dict[bytes, bytes]:
    """An ESEARCH response's return data as ``{NAME: value}`` (PARTIAL keeps its parens)."""
    data = untagged(lines, b"ESEARCH")
    data = re.sub(rb"^\(TAG \"[^\"]*\"\) ?", b"", data)
    out: dict[bytes, bytes] = {}
    for m in re.finditer(rb"([A-Za-z]+) (\([^)]*\)|\S+)", data):
        out[m.group(1).upper()] = m.group(2)
    return out


@requirement(
    "RFC5256",
    "3",
    "MUST",
    "SORT orders by each criterion in turn, REVERSE reversing one, ties in mailbox order",
)
def test_sort_criteria(target: Target) -> None:
    messages = [
        mail("Fri, 02 Jan 2026 10:00:00", "b", sender="zed@example.net"),
        mail("Thu, 01 Jan 2026 10:00:00", "a", sender="amy@example.net"),
        mail("Sat, 03 Jan 2026 10:00:00", "b", sender="bob@example.net"),
    ]
    with folder_with(target, "SORT", messages) as raw:
        assert sort_of(raw, "(DATE) UTF-8 ALL") == b"2 1 3"
        assert sort_of(raw, "(SUBJECT) UTF-8 ALL") == b"2 1 3"
        assert sort_of(raw, "(REVERSE SUBJECT) UTF-8 ALL") == b"1 3 2"
        assert sort_of(raw, "(SUBJECT REVERSE DATE) US-ASCII ALL") == b"2 3 1"
        assert sort_of(raw, "(FROM) UTF-8 NOT 2") == b"3 1"


@requirement(
    "RFC5256",
    "2.1",
    "MUST",
    "SORT SUBJECT compares base subjects: Re:, Fwd:, [blob] prefixes and (fwd) removed",
)
def test_sort_base_subject(target: Target) -> None:
    messages = [mail(DAY1, s) for s in ("kiwi", "[Fwd: lime]", "Re: [list] Fwd: apple (fwd)")]
    with folder_with(target, "SORT", messages) as raw:
        assert sort_of(raw, "(SUBJECT) UTF-8 ALL") == b"3 1 2"


@requirement(
    "RFC5957",
    "3",
    "MUST",
    "SORT DISPLAYFROM orders by the display name of the first From address, else its address",
)
def test_sort_displayfrom(target: Target) -> None:
    senders = ("Zoe <a@example.net>", "m@example.net", "Bea <z@example.net>")
    messages = [mail(DAY1, "x", sender=s) for s in senders]
    with folder_with(target, "SORT=DISPLAY", messages) as raw:
        assert sort_of(raw, "(DISPLAYFROM) UTF-8 ALL") == b"3 2 1"


@requirement(
    "RFC5256",
    "3",
    "MUST",
    "THREAD ORDEREDSUBJECT groups by base subject, the first by date the parent of the rest",
)
def test_thread_orderedsubject(target: Target) -> None:
    messages = [
        mail("Fri, 02 Jan 2026 10:00:00", "Re: plan"),
        mail("Thu, 01 Jan 2026 10:00:00", "plan"),
        mail("Sat, 03 Jan 2026 10:00:00", "other"),
        mail("Sun, 04 Jan 2026 10:00:00", "re: Plan"),
    ]
    with folder_with(target, "THREAD=ORDEREDSUBJECT", messages) as raw:
        lines = raw.command("THREAD ORDEREDSUBJECT UTF-8 ALL")
        assert untagged(lines, b"THREAD") == b"(2 (1)(4))(3)"


@requirement(
    "RFC5256",
    "4",
    "MUST",
    "THREAD REFERENCES links replies by References and In-Reply-To, oldest thread first",
)
def test_thread_references(target: Target) -> None:
    root = mail("Thu, 01 Jan 2026 10:00:00", "plan")
    root_id = re.search(rb"Message-ID: (<[^>]+>)", root)
    assert root_id is not None
    ref = root_id.group(1)
    messages = [
        mail("Sat, 03 Jan 2026 10:00:00", "unrelated"),
        root,
        mail("Fri, 02 Jan 2026 10:00:00", "answer", b"In-Reply-To: " + ref + b"\r\n"),
        mail(
            "Sun, 04 Jan 2026 10:00:00", "late", b"References: <lost@example.net> " + ref + b"\r\n"
        ),
    ]
    with folder_with(target, "THREAD=REFERENCES", messages) as raw:
        lines = raw.command("THREAD REFERENCES UTF-8 ALL")
        assert untagged(lines, b"THREAD") == b"(2 (3)(4))(1)"


@requirement(
    "RFC5267",
    "3",
    "MUST",
    "SORT RETURN (...) answers in ESEARCH: MIN and MAX the first and last in sort order",
)
def test_esort(target: Target) -> None:
    messages = [mail(f"Thu, 0{n} Jan 2026 10:00:00", "x") for n in (3, 1, 2)]
    with folder_with(target, "ESORT", messages) as raw:
        got = esearch(raw.command("SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL"))
        assert got == {b"MIN": b"2", b"MAX": b"1", b"COUNT": b"3", b"ALL": b"2:3,1"}, got


@requirement(
    "RFC5267",
    "4.4",
    "MUST",
    "SEARCH RETURN (PARTIAL lo:hi) returns the results at those positions, NIL past the end",
)
def test_search_partial(target: Target) -> None:
    messages = [mail(DAY1, "x") for _ in range(5)]
    with folder_with(target, "CONTEXT=SEARCH", messages) as raw:
        assert esearch(raw.command("SEARCH RETURN (PARTIAL 2:3) NOT 2"))[b"PARTIAL"] == b"(2:3 3:4)"
        assert esearch(raw.command("SEARCH RETURN (PARTIAL 4:2) ALL"))[b"PARTIAL"] == b"(2:4 2:4)"
        assert esearch(raw.command("SEARCH RETURN (PARTIAL 6:9) ALL"))[b"PARTIAL"].upper() == (
            b"(6:9 NIL)"
        )
        assert tagged(raw.command("SEARCH RETURN (PARTIAL 1:*) ALL")).startswith(b"BAD")


@requirement(
    "RFC5267",
    "4.3",
    "MUST",
    "SEARCH RETURN (UPDATE) reports messages joining and leaving the result until CANCELUPDATE",
)
def test_search_update(target: Target) -> None:
    messages = [mail(DAY1, "x") for _ in range(3)]
    with folder_with(target, "CONTEXT=SEARCH", messages) as raw:
        raw.command("SEARCH RETURN (UPDATE) FLAGGED")
        tag = f"r{raw.counter}".encode()
        lines = raw.command("STORE 1,3 +FLAGS.SILENT (\\Flagged)")
        assert _context(lines, tag, b"ADDTO") == b"1,3", lines
        lines = raw.command("STORE 1 -FLAGS.SILENT (\\Flagged)")
        assert _context(lines, tag, b"REMOVEFROM") == b"1", lines
        assert tagged(raw.command(b'CANCELUPDATE "' + tag + b'"')).startswith(b"OK")
        lines = raw.command("STORE 2 +FLAGS.SILENT (\\Flagged)")
        assert not [x for x in lines if b"ESEARCH" in x.upper()], lines


def _context(lines: list[bytes], tag: bytes, what: bytes) -> bytes:
    """The set of an ADDTO or REMOVEFROM update for ``tag`` (its position left out)."""
    found = [
        x
        for x in lines
        if x.upper().startswith(b"* ESEARCH") and b'"%s"' % tag in x and what in x.upper()
    ]
    assert len(found) == 1, lines
    m = re.search(what + rb" \(\d+ ([0-9:,]+)\)", found[0], re.IGNORECASE)
    assert m is not None, found
    return m.group(1)
