"""IMAP messages: FETCH (FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE,
BODY[section]<partial>, BINARY), STORE, SEARCH and ESEARCH, COPY, MOVE, EXPUNGE, CLOSE,
UNSELECT, the UID variants and UIDPLUS, CONDSTORE/QRESYNC (RFC 9051, RFC 3501, RFC 4315,
RFC 6851, RFC 4731, RFC 3516, RFC 7162)."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    RawImap,
    append,
    both_revisions,
    imap,
    message,
    multipart,
    require_capability,
    scratch_folder,
    tagged,
    token,
)


def told(flags: tuple[bytes, ...]) -> set[bytes]:
    """Flags as stored: without \\Recent, which an IMAP4rev1 server adds for one session
    (RFC 3501 2.3.2)."""
    return set(flags) - {b"\\Recent"}


def seen(client: IMAPClient, uid: int) -> bool:
    return b"\\Seen" in client.get_flags([uid])[uid]


@both_revisions(
    "6.4.5",
    "MUST",
    "FETCH returns FLAGS, INTERNALDATE and RFC822.SIZE, the size being that of BODY[]",
)
def test_fetch_attributes(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        data = message(token())
        uid = append(client, folder, data)
        client.select_folder(folder)
        got = client.fetch([uid], [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"BODY.PEEK[]"])
        item = got[uid]
        assert item[b"RFC822.SIZE"] == len(item[b"BODY[]"]) == len(data)
        assert told(item[b"FLAGS"]) == set() and item[b"INTERNALDATE"]


@both_revisions("6.4.5", "MUST", "FETCH BODY[] sets \\Seen; BODY.PEEK[] does not")
def test_fetch_body_sets_seen(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, message(token()))
        client.select_folder(folder)
        client.fetch([uid], [b"BODY.PEEK[]"])
        assert not seen(client, uid)
        client.fetch([uid], [b"BODY[]"])
        assert seen(client, uid)


@both_revisions(
    "6.4.5",
    "MUST",
    "BODY[HEADER], BODY[TEXT], BODY[HEADER.FIELDS (...)] and <partial> return those octets",
)
def test_fetch_sections(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        tok = token()
        data = message(tok, body=b"0123456789abcdef\r\n")
        uid = append(client, folder, data)
        client.select_folder(folder)
        header, _, text = data.partition(b"\r\n\r\n")
        got = client.fetch(
            [uid],
            [b"BODY.PEEK[HEADER]", b"BODY.PEEK[TEXT]", b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
             b"BODY.PEEK[TEXT]<4.6>"],
        )[uid]  # fmt: skip
        assert got[b"BODY[HEADER]"] == header + b"\r\n\r\n"
        assert got[b"BODY[TEXT]"] == text
        assert (
            got[b"BODY[HEADER.FIELDS (SUBJECT)]"] == f"Subject: conformance {tok}\r\n\r\n".encode()
        )
        assert got[b"BODY[TEXT]<4>"] == b"456789"


@both_revisions(
    "6.4.5", "MUST", "BODY[n] and BODY[n.MIME] address the parts of a multipart message"
)
def test_fetch_mime_parts(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, multipart(token()))
        client.select_folder(folder)
        got = client.fetch([uid], [b"BODY.PEEK[1]", b"BODY.PEEK[2.MIME]", b"BODY.PEEK[2]"])[uid]
        assert got[b"BODY[1]"] == b"First part."
        assert got[b"BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream")
        assert got[b"BODY[2.MIME]"].endswith(b"\r\n\r\n")
        assert got[b"BODY[2]"] == b"AAECAwRoZWxsbw=="


@requirement("RFC3501", "7.4.2", "MUST", "ENVELOPE carries date, subject, addresses and message-id")
@requirement("RFC9051", "7.5.2", "MUST", "ENVELOPE carries date, subject, addresses and message-id")
def test_envelope(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        tok = token()
        uid = append(client, folder, message(tok))
        client.select_folder(folder)
        envelope = client.fetch([uid], [b"ENVELOPE"])[uid][b"ENVELOPE"]
        assert envelope.subject == f"conformance {tok}".encode()
        (sender,) = envelope.from_
        assert sender.name == b"Conformance" and sender.mailbox == b"conformance"
        assert envelope.sender == envelope.from_  # defaults to From (7.5.2)
        assert envelope.reply_to == envelope.from_
        assert envelope.to[0].host == b"example.test"
        assert envelope.message_id.strip(b"<>").startswith(tok.encode())


@requirement(
    "RFC3501", "7.4.2", "MUST", "BODYSTRUCTURE describes each MIME part: type, parameters, size"
)
@requirement(
    "RFC9051", "7.5.2", "MUST", "BODYSTRUCTURE describes each MIME part: type, parameters, size"
)
def test_bodystructure(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, multipart(token()))
        client.select_folder(folder)
        structure = client.fetch([uid], [b"BODYSTRUCTURE"])[uid][b"BODYSTRUCTURE"]
        assert structure.is_multipart
        parts, subtype = structure[0], structure[1]
        assert subtype.upper() == b"MIXED" and len(parts) == 2
        text, blob = parts
        assert (text[0].upper(), text[1].upper()) == (b"TEXT", b"PLAIN")
        assert text[6] == len(b"First part.")
        assert (blob[0].upper(), blob[1].upper(), blob[5].upper()) == (
            b"APPLICATION", b"OCTET-STREAM", b"BASE64",
        )  # fmt: skip


@requirement(
    "RFC9051", "6.4.5", "MUST", "BINARY[n] returns the part with its transfer encoding undone"
)
def test_binary(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "BINARY") if not client.has_capability("IMAP4rev2") else None
        uid = append(client, folder, multipart(token()))
        client.select_folder(folder)
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command(f"UID FETCH {uid} (BINARY.PEEK[2] BINARY.SIZE[2])")
            assert tagged(lines).startswith(b"OK"), lines
            text = b"".join(lines)
            assert b"\x00\x01\x02\x03\x04hello" in text, lines
            assert b"BINARY.SIZE[2] 10" in text, lines
        finally:
            raw.close()


@both_revisions(
    "6.4.6", "MUST", "STORE +FLAGS, -FLAGS and FLAGS change flags and answer with the new flags"
)
def test_store(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, message(token()))
        client.select_folder(folder)
        assert told(client.add_flags([uid], [b"\\Flagged", b"$Work"])[uid]) == {
            b"\\Flagged", b"$Work"
        }  # fmt: skip
        assert told(client.remove_flags([uid], [b"$Work"])[uid]) == {b"\\Flagged"}
        assert told(client.set_flags([uid], [b"\\Answered"])[uid]) == {b"\\Answered"}
        with imap(target) as other:
            other.select_folder(folder, readonly=True)
            assert told(other.get_flags([uid])[uid]) == {b"\\Answered"}  # stored for good


@both_revisions("6.4.6", "MUST", "STORE FLAGS.SILENT sends no FETCH for the change")
def test_store_silent(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command("STORE 1 +FLAGS.SILENT (\\Flagged)")
            assert tagged(lines).startswith(b"OK") and len(lines) == 1, lines
        finally:
            raw.close()


@both_revisions(
    "6.4.4",
    "MUST",
    "SEARCH finds messages by flags, header text, size, UID and boolean combinations",
)
def test_search(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        a = append(client, folder, message(token(), subject="apple pie"), flags=(b"\\Seen",))
        b = append(client, folder, message(token(), subject="banana", body=b"x" * 500 + b"\r\n"))
        c = append(client, folder, message(token(), subject="cherry"), flags=(b"\\Flagged",))
        client.select_folder(folder)
        assert client.search(["SEEN"]) == [a]
        assert client.search(["UNSEEN", "NOT", "FLAGGED"]) == [b]
        assert client.search(["SUBJECT", "APPLE"]) == [a]  # case-insensitive substring
        assert client.search(["LARGER", 500]) == [b]
        assert client.search(["OR", "FLAGGED", "SEEN"]) == [a, c]
        assert client.search(["UID", f"{b}:{c}"]) == [b, c]
        assert client.search(["BODY", "xxxxx"]) == [b]
        assert client.search(["FROM", "conformance"]) == [a, b, c]


@requirement("RFC4731", "3.1", "MUST", "SEARCH RETURN (MIN MAX COUNT ALL) answers with ESEARCH")
def test_esearch(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        if not (client.has_capability("ESEARCH") or client.has_capability("IMAP4rev2")):
            pytest.skip("not applicable: no ESEARCH")
        uids = [append(client, folder, message(token())) for _ in range(3)]
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command("UID SEARCH RETURN (MIN MAX COUNT) ALL")
            (line,) = [x for x in lines if x.startswith(b"* ESEARCH")]
            assert b" UID " in line, line
            words = line.split()
            assert words[words.index(b"MIN") + 1] == b"%d" % uids[0]
            assert words[words.index(b"MAX") + 1] == b"%d" % uids[-1]
            assert words[words.index(b"COUNT") + 1] == b"3"
        finally:
            raw.close()


@both_revisions(
    "6.4.7", "MUST", "COPY copies messages with their flags and leaves the source as it was"
)
def test_copy(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as source, scratch_folder(client) as dest:
        tok = token()
        uid = append(client, source, message(tok), flags=(b"\\Flagged",))
        client.select_folder(source)
        client.copy([uid], dest)
        assert client.search(["ALL"]) == [uid]
        client.select_folder(dest)
        (copied,) = client.search(["HEADER", "Message-ID", tok])
        assert b"\\Flagged" in client.get_flags([copied])[copied]


@both_revisions("6.4.7", "MUST", "COPY to a missing mailbox fails (TRYCREATE)")
def test_copy_to_missing_mailbox(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command(f"COPY 1 missing-{token()}")
            assert tagged(lines).startswith(b"NO"), lines
        finally:
            raw.close()


@requirement(
    "RFC4315", "3", "MUST", "COPY answers COPYUID with the destination's UIDVALIDITY and UIDs"
)
def test_copyuid(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as source, scratch_folder(client) as dest:
        require_capability(client, "UIDPLUS")
        uid = append(client, source, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {source}")
            lines = raw.command(f"UID COPY {uid} {dest}")
            assert b"[COPYUID " in tagged(lines), lines
            validity, src, dst = tagged(lines).split(b"[COPYUID ")[1].split(b"]")[0].split()
            assert int(src) == uid
        finally:
            raw.close()
        status = client.folder_status(dest, ["UIDVALIDITY"])
        assert status[b"UIDVALIDITY"] == int(validity)
        client.select_folder(dest)
        assert client.search(["ALL"]) == [int(dst)]


@requirement(
    "RFC6851",
    "3.1",
    "MUST",
    "MOVE puts the messages in the destination and expunges them from the source",
)
def test_move(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as source, scratch_folder(client) as dest:
        require_capability(client, "MOVE")
        tok = token()
        uid = append(client, source, message(tok), flags=(b"\\Answered",))
        keep = append(client, source, message(token()))
        client.select_folder(source)
        client.move([uid], dest)
        assert client.search(["ALL"]) == [keep]
        client.select_folder(dest)
        (moved,) = client.search(["HEADER", "Message-ID", tok])
        assert b"\\Answered" in client.get_flags([moved])[moved]


@requirement(
    "RFC6851",
    "4.3",
    "MUST",
    "MOVE sends COPYUID in an untagged OK before the expunges, with UIDPLUS",
)
def test_move_responses(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as source, scratch_folder(client) as dest:
        require_capability(client, "MOVE")
        require_capability(client, "UIDPLUS")
        append(client, source, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {source}")
            lines = raw.command(f"MOVE 1 {dest}")
            assert tagged(lines).startswith(b"OK"), lines
            copyuid = [i for i, x in enumerate(lines) if x.startswith(b"* OK [COPYUID ")]
            expunge = [
                i for i, x in enumerate(lines) if x == b"* 1 EXPUNGE\r\n" or b"VANISHED" in x
            ]
            assert copyuid and expunge and copyuid[0] < expunge[0], lines
        finally:
            raw.close()


@both_revisions(
    "6.4.3",
    "MUST",
    "EXPUNGE removes the \\Deleted messages and reports each with an EXPUNGE response",
)
def test_expunge(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uids = [append(client, folder, message(token())) for _ in range(3)]
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            raw.command("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
            lines = raw.command("EXPUNGE")
            assert tagged(lines).startswith(b"OK"), lines
            reported = [x for x in lines if x.endswith(b" EXPUNGE\r\n")]
            assert len(reported) == 2, lines
        finally:
            raw.close()
        client.select_folder(folder)
        assert client.search(["ALL"]) == [uids[1]]


@requirement("RFC4315", "2.1", "MUST", "UID EXPUNGE removes only the \\Deleted messages it names")
def test_uid_expunge(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "UIDPLUS")
        a, b = (append(client, folder, message(token())) for _ in range(2))
        client.select_folder(folder)
        client.add_flags([a, b], [b"\\Deleted"])
        client.uid_expunge([a])
        assert client.search(["ALL"]) == [b]


@requirement("RFC3501", "6.4.2", "MUST", "CLOSE expunges \\Deleted messages silently and deselects")
@requirement("RFC9051", "6.4.1", "MUST", "CLOSE expunges \\Deleted messages silently and deselects")
def test_close(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()), flags=(b"\\Deleted",))
        keep = append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command("CLOSE")
            assert lines == [lines[-1]] and tagged(lines).startswith(b"OK"), lines
            assert tagged(raw.command("FETCH 1 FLAGS")).startswith(b"BAD")
        finally:
            raw.close()
        client.select_folder(folder)
        assert client.search(["ALL"]) == [keep]


@requirement("RFC9051", "6.4.2", "MUST", "UNSELECT deselects without expunging")
def test_unselect(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, message(token()), flags=(b"\\Deleted",))
        client.select_folder(folder)
        client.unselect_folder()
        with pytest.raises(IMAPClientError):
            client.fetch([uid], [b"FLAGS"])
        client.select_folder(folder)
        assert client.search(["ALL"]) == [uid]


@requirement(
    "RFC3501",
    "6.4.8",
    "MUST",
    "UID FETCH and UID STORE address messages by UID and include UID in each FETCH",
)
@requirement(
    "RFC9051",
    "6.4.9",
    "MUST",
    "UID FETCH and UID STORE address messages by UID and include UID in each FETCH",
)
def test_uid_commands(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        uid = append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command(f"UID FETCH {uid} FLAGS")
            assert lines[0].startswith(b"* 2 FETCH (") and b"UID %d" % uid in lines[0], lines
            lines = raw.command(f"UID STORE {uid} +FLAGS (\\Seen)")
            assert b"UID %d" % uid in lines[0] and b"\\Seen" in lines[0], lines
            lines = raw.command(f"UID FETCH {uid + 1000} FLAGS")
            assert lines == [lines[-1]] and tagged(lines).startswith(b"OK"), lines
        finally:
            raw.close()


@both_revisions("6.4.5", "MUST", "a FETCH of a sequence number past the last message is BAD")
def test_fetch_past_the_end(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            assert tagged(raw.command("FETCH 5 FLAGS")).startswith((b"BAD", b"NO"))
        finally:
            raw.close()


@requirement(
    "RFC7162",
    "3.1.3",
    "MUST",
    "STORE (UNCHANGEDSINCE) refuses changed messages with [MODIFIED]",
)
def test_condstore_unchangedsince(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "CONDSTORE")
        uid = append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f"SELECT {folder} (CONDSTORE)")
            assert any(b"[HIGHESTMODSEQ " in x for x in lines), lines
            fetched = raw.command(f"UID FETCH {uid} (MODSEQ)")[0]
            modseq = int(fetched.split(b"MODSEQ (")[1].split(b")")[0])
            assert tagged(raw.command(f"UID STORE {uid} +FLAGS (\\Seen)")).startswith(b"OK")
            lines = raw.command(f"UID STORE {uid} (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)")
            assert f"[MODIFIED {uid}]".encode() in tagged(lines), lines
            after = raw.command(f"UID FETCH {uid} (FLAGS MODSEQ)")[0]
            assert (
                b"\\Flagged" not in after
                and int(after.split(b"MODSEQ (")[1].split(b")")[0]) > modseq
            )
        finally:
            raw.close()


@requirement(
    "RFC7162", "3.1.4", "MUST", "FETCH (CHANGEDSINCE n) returns only messages changed after n"
)
def test_condstore_changedsince(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "CONDSTORE")
        a, b = (append(client, folder, message(token())) for _ in range(2))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f"SELECT {folder} (CONDSTORE)")
            highest = int(
                next(x for x in lines if b"[HIGHESTMODSEQ " in x)
                .split(b"[HIGHESTMODSEQ ")[1]
                .split(b"]")[0]
            )
            raw.command(f"UID STORE {b} +FLAGS.SILENT (\\Seen)")
            lines = raw.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
            fetches = [x for x in lines if b" FETCH (" in x]
            assert len(fetches) == 1 and b"UID %d" % b in fetches[0], lines
            assert a != b
        finally:
            raw.close()


@requirement(
    "RFC7162",
    "3.2.5",
    "MUST",
    "SELECT (QRESYNC ...) reports messages expunged since as VANISHED (EARLIER)",
)
def test_qresync_vanished(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "QRESYNC")
        a, b = (append(client, folder, message(token())) for _ in range(2))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command("ENABLE QRESYNC")
            lines = raw.command(f"SELECT {folder}")
            text = b"".join(lines)
            validity = int(text.split(b"[UIDVALIDITY ")[1].split(b"]")[0])
            highest = int(text.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
            raw.command("UNSELECT")
            client.select_folder(folder)
            client.add_flags([a], [b"\\Deleted"])
            client.expunge()
            client.unselect_folder()
            lines = raw.command(f"SELECT {folder} (QRESYNC ({validity} {highest}))")
            assert any(x.startswith(b"* VANISHED (EARLIER) %d" % a) for x in lines), lines
            assert b != a
        finally:
            raw.close()


# -- found by imaptest's scripted tests (issue 14): each a clause any server must keep --------


def _fetch_raw(target: Target, data: bytes, command: str) -> tuple[bytes, list[bytes]]:
    """APPEND ``data`` to a scratch folder and answer ``UID FETCH <uid> <command>`` raw."""
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, data)
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command(f"UID FETCH {uid} {command}")
            return b"".join(lines), lines
        finally:
            raw.close()


@requirement(
    "RFC3501",
    "7.4.2",
    "MUST",
    "FETCH BODY alone (the non-extensible BODYSTRUCTURE) describes the message: a multipart "
    "whose boundary parameter is folded over two lines (RFC 5322 2.2.3)",
)
def test_bodystructure_of_a_folded_boundary(target: Target) -> None:
    data = (
        b"From: user@example.org\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\n"
        b'Mime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\n'
        b"--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\n\r\nhello\r\n\r\n"
        b"--foo bar--\r\n"
    )
    text, lines = _fetch_raw(target, data, "BODY")
    assert b'"MIXED"' in text.upper() and b'"X-MYOWN"' in text.upper(), lines


@requirement(
    "RFC3501",
    "7.4.2",
    "MUST",
    "ENVELOPE keeps RFC 5322 groups (a NIL-host start and a NIL end), every Cc, and the "
    "obsolete route of an address (its at-domain-list)",
)
def test_envelope_groups_and_routes(target: Target) -> None:
    data = (
        b"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: <@route:user@domain>\r\n"
        b"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"
        b"Cc: group:;, group2: (foo) ;\r\n\r\nbody\r\n"
    )
    text, lines = _fetch_raw(target, data, "ENVELOPE")
    assert b'((NIL "@route" "user" "domain"))' in text, lines
    assert (
        b'((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
        b'(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL))'
    ) in text, lines
    assert b'((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL))' in (
        text
    ), lines


@requirement(
    "RFC3501",
    "6.4.4",
    "MUST",
    "SEARCH FROM and TO match an address written with comments inside it or inside a group",
)
def test_search_addresses_with_comments_and_groups(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        a = append(
            client,
            folder,
            b"From: <user-from (comment)@ (comment) domain.org>\r\n"
            b"To: groupname: groupuser1@domain.org;\r\n\r\nbody\r\n",
        )
        client.select_folder(folder)
        assert client.search(["FROM", "user-from@domain.org"]) == [a]
        assert client.search(["TO", "groupname"]) == [a]
        assert client.search(["TO", "groupuser1@domain.org"]) == [a]


@requirement(
    "RFC2045",
    "6.7",
    "MUST",
    "BINARY of a quoted-printable part drops trailing whitespace and soft line breaks",
)
def test_binary_quoted_printable(target: Target) -> None:
    data = (
        b"From: user@example.org\r\nMime-Version: 1.0\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"foo  \r\nbar\t \r\nfo=\r\no=20\r\n"
    )
    text, lines = _fetch_raw(target, data, "(BINARY.SIZE[1] BINARY.PEEK[1])")
    if b"BINARY" not in text.upper() and tagged(lines).startswith(b"BAD"):
        pytest.skip("not applicable: no BINARY")
    assert b"BINARY.SIZE[1] 16" in text, lines
    assert b"{16}\r\nfoo\r\nbar\r\nfoo \r\n" in text, lines


@requirement(
    "RFC3516",
    "4.2",
    "MUST",
    "a binary part APPENDed in a literal8 keeps its exact octets (NUL, bare LF): BINARY[1] "
    "returns them in a literal8, BINARY.SIZE counts them, BODY[1] carries no NUL",
)
def test_append_binary_part_with_nul(target: Target) -> None:
    with imap(target) as client:
        if not client.has_capability("BINARY"):
            pytest.skip("not applicable: no BINARY")
    payload = b"\x00-\xe4\n\r\n\n"
    data = (
        b"From: user@example.org\r\nMime-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + payload
    )
    with imap(target) as client, scratch_folder(client) as folder:
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.send(b"a1 APPEND %s ~{%d}\r\n" % (folder.encode(), len(data)))
            first = raw.line()
            if first.startswith(b"+"):
                raw.send(data + b"\r\n")
                lines = raw.until(b"a1")
            else:
                lines = [first]
            assert tagged(lines).startswith(b"OK"), lines
            raw.command(f"SELECT {folder}")
            lines = raw.command("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
            text = b"".join(lines)
            assert b"BINARY.SIZE[1] %d" % len(payload) in text, lines
            assert b"~{%d}\r\n" % len(payload) + payload in text, lines
            lines = raw.command("FETCH 1 (BODY.PEEK[1])")
            assert tagged(lines).startswith(b"OK") and b"\x00" not in b"".join(lines), lines
        finally:
            raw.close()


@requirement(
    "RFC7162",
    "3.1",
    "MUST",
    "the first CONDSTORE-enabling command (FETCH MODSEQ) is followed by OK [HIGHESTMODSEQ]",
)
def test_fetch_modseq_reports_highestmodseq(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "CONDSTORE")
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command("FETCH 1 MODSEQ")
            assert any(line.startswith(b"* OK [HIGHESTMODSEQ ") for line in lines), lines
        finally:
            raw.close()


@requirement(
    "RFC7162",
    "3.1.5",
    "MUST",
    "SEARCH RETURN (MIN) with MODSEQ gives the mod-sequence of the message it returns; "
    "ALL gives the highest of all matches",
)
def test_esearch_modseq_of_min_and_all(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "CONDSTORE")
        require_capability(client, "ESEARCH")
        for _ in range(3):
            append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            raw.command("FETCH 1 MODSEQ")  # RFC 7162 3.1.8: CONDSTORE enabled from here on
            modseq = {}
            for n in (1, 3, 2):
                lines = raw.command(f"STORE {n} +FLAGS (\\Seen)")
                (line,) = [x for x in lines if b"MODSEQ (" in x.upper()]
                modseq[n] = int(line.upper().split(b"MODSEQ (")[1].split(b")")[0])
            lines = raw.command('SEARCH RETURN (MIN) 1:3 MODSEQ "/flags/\\\\seen" all 1')
            (line,) = [x for x in lines if x.upper().startswith(b"* ESEARCH")]
            assert line.upper().endswith(b"MIN 1 MODSEQ %d\r\n" % modseq[1]), line
            lines = raw.command('SEARCH RETURN (ALL) 1:3 MODSEQ "/flags/\\\\seen" all 1')
            (line,) = [x for x in lines if x.upper().startswith(b"* ESEARCH")]
            assert line.upper().endswith(b"ALL 1:3 MODSEQ %d\r\n" % modseq[2]), line
        finally:
            raw.close()
