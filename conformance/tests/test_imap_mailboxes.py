"""IMAP mailboxes: SELECT/EXAMINE, CREATE/DELETE/RENAME, SUBSCRIBE, LIST/LSUB with SPECIAL-USE
and LIST-STATUS, STATUS, APPEND with literals and UIDPLUS, QUOTA (RFC 9051, RFC 3501,
RFC 6154, RFC 5258, RFC 5819, RFC 4315, RFC 7888, RFC 9208)."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from conformance.requirements import not_applicable, requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    RawImap,
    append,
    both_revisions,
    imap,
    message,
    require_capability,
    scratch_folder,
    tagged,
    token,
)

# The mailboxes the platform gives every account (PLATFORM mailbox.special-use): a policy.
SPECIAL = {b"\\Sent", b"\\Drafts", b"\\Junk", b"\\Trash", b"\\Archive"}
# Every attribute RFC 6154 2 defines; the RFC requires none of them to exist.
RFC6154_ATTRIBUTES = SPECIAL | {b"\\All", b"\\Flagged"}


def _special_use(line: bytes) -> set[bytes]:
    """The RFC 6154 attributes of one LIST response line (in its first parenthesis)."""
    flags = line.partition(b"(")[2].partition(b")")[0].split()
    known = {a.lower(): a for a in RFC6154_ATTRIBUTES}
    return {known[f.lower()] for f in flags if f.lower() in known}


@requirement(
    "RFC3501",
    "6.3.1",
    "MUST",
    "SELECT reports EXISTS, FLAGS, UIDVALIDITY and UIDNEXT and answers OK [READ-WRITE]",
)
@requirement(
    "RFC9051",
    "6.3.2",
    "MUST",
    "SELECT reports EXISTS, FLAGS, UIDVALIDITY and UIDNEXT and answers OK [READ-WRITE]",
)
def test_select_reports_the_mailbox(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        lines = raw.command("SELECT INBOX")
        text = b"".join(lines)
        assert tagged(lines).startswith(b"OK [READ-WRITE]"), lines
        assert b" EXISTS\r\n" in text and b"* FLAGS (" in text, lines
        assert b"[UIDVALIDITY " in text and b"[UIDNEXT " in text, lines
    finally:
        raw.close()


@requirement("RFC3501", "6.3.1", "MUST", "a failed SELECT leaves no mailbox selected")
@requirement("RFC9051", "6.3.2", "MUST", "a failed SELECT leaves no mailbox selected")
def test_failed_select_deselects(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        assert tagged(raw.command("SELECT INBOX")).startswith(b"OK")
        assert tagged(raw.command(f"SELECT no-such-{token()}")).startswith(b"NO")
        assert tagged(raw.command("FETCH 1:* FLAGS")).startswith(b"BAD")
    finally:
        raw.close()


@requirement(
    "RFC3501",
    "6.3.2",
    "MUST",
    "EXAMINE selects read-only: OK [READ-ONLY], and reading does not set \\Seen",
)
@requirement(
    "RFC9051",
    "6.3.3",
    "MUST",
    "EXAMINE selects read-only: OK [READ-ONLY], and reading does not set \\Seen",
)
def test_examine_is_read_only(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uid = append(client, folder, message(token()))
        assert client.select_folder(folder, readonly=True)[b"READ-ONLY"] == [b""]
        client.fetch([uid], [b"BODY[]"])
        client.select_folder(folder)
        assert b"\\Seen" not in client.get_flags([uid])[uid]


@requirement(
    "RFC3501", "6.3.3", "MUST", "CREATE makes a mailbox; creating an existing one is an error"
)
@requirement(
    "RFC9051", "6.3.4", "MUST", "CREATE makes a mailbox; creating an existing one is an error"
)
def test_create(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        assert client.folder_exists(folder)
        with pytest.raises(IMAPClientError):
            client.create_folder(folder)
        with pytest.raises(IMAPClientError):
            client.create_folder("INBOX")


@requirement("RFC3501", "6.3.3", "MUST", "CREATE of a hierarchical name makes it reachable")
@requirement("RFC9051", "6.3.4", "MUST", "CREATE of a hierarchical name makes it reachable")
def test_create_hierarchy(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        delimiter = client.namespace().personal[0][1] or "/"
        child = f"{folder}{delimiter}child"
        client.create_folder(child)
        try:
            assert client.folder_exists(child)
            flags = {f for f, _, n in client.list_folders(folder) if n == folder}
            assert flags, "parent not listed"
        finally:
            client.delete_folder(child)


@requirement("RFC3501", "6.3.4", "MUST", "DELETE removes a mailbox; deleting INBOX is an error")
@requirement("RFC9051", "6.3.5", "MUST", "DELETE removes a mailbox; deleting INBOX is an error")
def test_delete(target: Target) -> None:
    with imap(target) as client:
        name = f"conformance-{token()}"
        client.create_folder(name)
        client.delete_folder(name)
        assert not client.folder_exists(name)
        with pytest.raises(IMAPClientError):
            client.delete_folder(name)
        with pytest.raises(IMAPClientError):
            client.delete_folder("INBOX")


@requirement(
    "RFC3501",
    "6.3.5",
    "MUST",
    "RENAME moves a mailbox and its messages; renaming onto an existing name is an error",
)
@requirement(
    "RFC9051",
    "6.3.6",
    "MUST",
    "RENAME moves a mailbox and its messages; renaming onto an existing name is an error",
)
def test_rename(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        tok = token()
        append(client, folder, message(tok))
        renamed = folder + "-renamed"
        client.rename_folder(folder, renamed)
        try:
            assert not client.folder_exists(folder)
            client.select_folder(renamed)
            assert client.search(["HEADER", "Message-ID", tok])
            client.create_folder(folder)
            with pytest.raises(IMAPClientError):
                client.rename_folder(renamed, folder)
        finally:
            client.unselect_folder()
            client.delete_folder(renamed)


@requirement("RFC3501", "6.3.6", "MUST", "SUBSCRIBE and UNSUBSCRIBE change what LSUB returns")
@requirement(
    "RFC9051",
    "6.3.7",
    "MUST",
    "SUBSCRIBE and UNSUBSCRIBE change what LSUB and LIST (SUBSCRIBED) return",
)
def test_subscribe(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        client.subscribe_folder(folder)
        assert folder in [n for _, _, n in client.list_sub_folders()]
        client.unsubscribe_folder(folder)
        assert folder not in [n for _, _, n in client.list_sub_folders()]


@requirement(
    "RFC3501",
    "6.3.8",
    "MUST",
    'LIST "" "" returns the hierarchy delimiter and the root',
)
@requirement(
    "RFC9051",
    "6.3.9",
    "MUST",
    'LIST "" "" returns the hierarchy delimiter and the root',
)
def test_list_empty_pattern(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        lines = raw.command('LIST "" ""')
        assert tagged(lines).startswith(b"OK")
        (reply,) = [line for line in lines if line.startswith(b"* LIST ")]
        assert b"\\Noselect" in reply, reply
    finally:
        raw.close()


@requirement("RFC3501", "6.3.8", "MUST", "LIST * includes INBOX; % does not cross the delimiter")
@requirement("RFC9051", "6.3.9", "MUST", "LIST * includes INBOX; % does not cross the delimiter")
def test_list_wildcards(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        delimiter = client.namespace().personal[0][1] or "/"
        child = f"{folder}{delimiter}deeper"
        client.create_folder(child)
        try:
            everything = [n for _, _, n in client.list_folders()]
            assert "INBOX" in [n.upper() for n in everything]
            assert child in everything
            top = [n for _, _, n in client.list_folders("", "%")]
            assert folder in top and child not in top
        finally:
            client.delete_folder(child)


@requirement(
    "PLATFORM",
    "mailbox.special-use",
    "MUST",
    "every account has Sent, Drafts, Junk, Trash and Archive from its first login",
)
def test_special_use_folders_exist(target: Target) -> None:
    with imap(target, target.second_account) as client:
        attributes = {a for flags, _, _ in client.list_folders() for a in flags}
        assert attributes >= SPECIAL, f"missing {SPECIAL - attributes}"


@requirement("RFC6154", "2", "MUST", "special-use attributes are returned for RETURN (SPECIAL-USE)")
def test_special_use_return_option(target: Target) -> None:
    # RFC 6154 demands no particular mailbox (an \\Archive is the platform's promise, above):
    # what the selection option LIST (SPECIAL-USE) finds must carry its attributes when
    # asked for with RETURN (SPECIAL-USE).
    with imap(target) as client:
        require_capability(client, "SPECIAL-USE")
    raw = RawImap(target)
    try:
        raw.login(target.account)
        selected = raw.command('LIST (SPECIAL-USE) "" *')
        wanted = {
            line.rpartition(b" ")[2]: _special_use(line)
            for line in selected
            if line.startswith(b"* LIST ") and _special_use(line)
        }
        if not wanted:
            not_applicable("the account has no special-use mailbox (LIST (SPECIAL-USE) is empty)")
        lines = raw.command('LIST "" * RETURN (SPECIAL-USE)')
        assert tagged(lines).startswith(b"OK"), lines
        got = {
            line.rpartition(b" ")[2]: _special_use(line)
            for line in lines
            if line.startswith(b"* LIST ")
        }
        for name, attributes in wanted.items():
            assert got.get(name, set()) >= attributes, (
                f"{name!r} is {sorted(attributes)} for LIST (SPECIAL-USE), but RETURN "
                f"(SPECIAL-USE) gave {sorted(got.get(name, set()))}: {lines}"
            )
    finally:
        raw.close()


@requirement("RFC6154", "3", "MUST", "LIST (SPECIAL-USE) returns only the special-use mailboxes")
def test_special_use_selection(target: Target) -> None:
    with imap(target) as client:
        require_capability(client, "SPECIAL-USE")
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command('LIST (SPECIAL-USE) "" *')
            assert tagged(lines).startswith(b"OK"), lines
            listed = [line for line in lines if line.startswith(b"* LIST ")]
            if not listed:
                not_applicable("the account has no special-use mailbox to select")
            assert all(_special_use(line) for line in listed), lines
        finally:
            raw.close()


@requirement("RFC5819", "2", "MUST", "LIST RETURN (STATUS ...) adds a STATUS response per mailbox")
def test_list_status(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "LIST-STATUS")
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f'LIST "" "{folder}" RETURN (STATUS (MESSAGES UIDNEXT))')
            status = [line for line in lines if line.startswith(b"* STATUS ")]
            assert len(status) == 1 and b"MESSAGES 1" in status[0], lines
        finally:
            raw.close()


@requirement(
    "RFC3501",
    "6.3.10",
    "MUST",
    "STATUS reports MESSAGES, UNSEEN, UIDNEXT and UIDVALIDITY of a mailbox",
)
@requirement(
    "RFC9051",
    "6.3.11",
    "MUST",
    "STATUS reports MESSAGES, UNSEEN, UIDNEXT and UIDVALIDITY of a mailbox",
)
def test_status(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()), flags=(b"\\Seen",))
        uid = append(client, folder, message(token()))
        status = client.folder_status(folder, ["MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY"])
        assert status[b"MESSAGES"] == 2 and status[b"UNSEEN"] == 1
        assert status[b"UIDNEXT"] > uid and status[b"UIDVALIDITY"] > 0


@requirement(
    "RFC3501",
    "6.3.11",
    "MUST",
    "APPEND stores the message with the flags and internal date given",
)
@requirement(
    "RFC9051",
    "6.3.12",
    "MUST",
    "APPEND stores the message with the flags and internal date given",
)
def test_append(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        data = message(token())
        when = datetime.datetime(2025, 6, 1, 12, 30, tzinfo=datetime.UTC)
        client.append(folder, data, flags=(b"\\Flagged", b"$Conformance"), msg_time=when)
        client.select_folder(folder)
        (uid,) = client.search(["ALL"])
        fetched = client.fetch([uid], [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"])[uid]
        assert fetched[b"BODY[]"] == data
        assert {b"\\Flagged", b"$Conformance"} <= set(fetched[b"FLAGS"])
        # imapclient gives local time, naive: timestamp() reads it as such.
        assert abs(fetched[b"INTERNALDATE"].timestamp() - when.timestamp()) < 1


@requirement(
    "RFC3501",
    "6.3.11",
    "MUST",
    "APPEND to a mailbox that does not exist fails (TRYCREATE) without creating it",
)
@requirement(
    "RFC9051",
    "6.3.12",
    "MUST",
    "APPEND to a mailbox that does not exist fails (TRYCREATE) without creating it",
)
def test_append_to_missing_mailbox(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        name = f"missing-{token()}"
        raw.send(b"a1 APPEND " + name.encode() + b" {5}\r\n")
        first = raw.line()
        if first.startswith(b"+"):
            raw.send(b"hello\r\n")
            lines = raw.until(b"a1")
        else:
            lines = [first]
        assert tagged(lines).startswith(b"NO"), lines
        assert tagged(raw.command(f"STATUS {name} (MESSAGES)")).startswith(b"NO")
    finally:
        raw.close()


@both_revisions(
    "4.3", "MUST", "a synchronizing literal gets a continuation request before its octets"
)
def test_synchronizing_literal(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        raw = RawImap(target)
        try:
            raw.login(target.account)
            data = message(token())
            raw.send(b"a1 APPEND " + folder.encode() + b" {%d}\r\n" % len(data))
            assert raw.line().startswith(b"+"), "no continuation request"
            raw.send(data + b"\r\n")
            assert tagged(raw.until(b"a1")).startswith(b"OK")
        finally:
            raw.close()


@requirement(
    "RFC7888", "4", "MUST", "a non-synchronizing literal (LITERAL+) is taken without a '+'"
)
def test_non_synchronizing_literal(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        if not (client.has_capability("LITERAL+") or client.has_capability("LITERAL-")):
            pytest.skip("not applicable: no LITERAL+ advertised")
        raw = RawImap(target)
        try:
            raw.login(target.account)
            data = message(token())
            raw.send(b"a1 APPEND " + folder.encode() + b" {%d+}\r\n" % len(data) + data + b"\r\n")
            lines = raw.until(b"a1")
            assert not any(line.startswith(b"+") for line in lines), lines
            assert tagged(lines).startswith(b"OK"), lines
        finally:
            raw.close()


@requirement("RFC4315", "3", "MUST", "APPEND answers APPENDUID with the UIDVALIDITY and UID given")
def test_appenduid(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "UIDPLUS")
        reply = client.append(folder, message(token()))
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        assert "[APPENDUID " in text.upper(), text
        validity, uid = (int(x) for x in text.split("[APPENDUID ", 1)[1].split("]")[0].split())
        selected = client.select_folder(folder)
        assert selected[b"UIDVALIDITY"] == validity
        assert client.search(["ALL"]) == [uid]


@both_revisions(
    "2.3.1.1",
    "MUST",
    "UIDs strictly ascend and UIDVALIDITY stays the same across sessions",
)
def test_uids_ascend_and_persist(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        uids = [append(client, folder, message(token())) for _ in range(3)]
        assert uids == sorted(uids) and len(set(uids)) == 3
        validity = client.select_folder(folder)[b"UIDVALIDITY"]
        with imap(target) as other:
            assert other.select_folder(folder)[b"UIDVALIDITY"] == validity
            assert other.search(["ALL"]) == uids


@requirement(
    "RFC9208", "4.3", "MUST", "GETQUOTAROOT answers QUOTAROOT, and QUOTA for each root named"
)
def test_getquotaroot(target: Target) -> None:
    with imap(target) as client:
        require_capability(client, "QUOTA")
    raw = RawImap(target)
    try:
        raw.login(target.account)
        lines = raw.command("GETQUOTAROOT INBOX")
        assert tagged(lines).startswith(b"OK"), lines
        (root_line,) = [line for line in lines if line.startswith(b"* QUOTAROOT ")]
        roots = root_line.split()[3:]
        quotas = [line for line in lines if line.startswith(b"* QUOTA ")]
        assert len(quotas) == len(roots), lines
        for line in quotas:
            assert b"(" in line and line.rstrip().endswith(b")"), line
    finally:
        raw.close()


@requirement("RFC9208", "4.1", "MAY", "SETQUOTA by an ordinary user is refused with NO")
def test_setquota_refused(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        lines = raw.command('SETQUOTA "" (STORAGE 1)')
        assert tagged(lines).startswith((b"NO", b"BAD")), lines
    finally:
        raw.close()


# -- IMAP4rev1 (RFC 3501) as an IMAP4rev1 client sees it: nothing ENABLEd --------------------


@requirement(
    "RFC3501", "6.3.1", "MUST", "SELECT sends the FLAGS, EXISTS and RECENT untagged responses"
)
def test_rev1_select_responses(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        lines = raw.command("SELECT INBOX")
        assert tagged(lines).startswith(b"OK"), lines
        for required in (b"* FLAGS (", b" EXISTS\r\n", b" RECENT\r\n"):
            assert any(required in line for line in lines), f"no {required!r} in {lines}"
    finally:
        raw.close()


@requirement("RFC3501", "7.2.5", "MUST", "SEARCH answers with an untagged SEARCH response")
def test_rev1_search_response(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        raw = RawImap(target)
        try:
            raw.login(target.account)
            raw.command(f"SELECT {folder}")
            lines = raw.command("SEARCH ALL")
            assert lines[0] == b"* SEARCH 1\r\n", lines
        finally:
            raw.close()


@requirement("RFC3501", "6.3.9", "MUST", "LSUB returns the subscribed names that match")
def test_rev1_lsub(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        client.subscribe_folder(folder)
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f'LSUB "" "{folder}"')
            assert tagged(lines).startswith(b"OK"), lines
            listed = [line for line in lines if line.startswith(b"* LSUB ")]
            assert len(listed) == 1 and folder.encode() in listed[0], lines
        finally:
            raw.close()
        client.unsubscribe_folder(folder)


# -- found by imaptest's scripted tests (issue 14) ----------------------------------------------


@requirement(
    "RFC3501",
    "2.3.1.1",
    "MUST",
    "a mailbox deleted and created again under the same name gets a new UIDVALIDITY",
)
def test_uidvalidity_changes_when_a_name_is_reused(target: Target) -> None:
    with imap(target) as client:
        name = f"conformance-{token()}"
        client.create_folder(name)
        append(client, name, message(token()))
        before = client.folder_status(name, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        client.delete_folder(name)
        client.create_folder(name)
        try:
            after = client.folder_status(name, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
            assert after != before
        finally:
            client.delete_folder(name)


@requirement(
    "RFC3501",
    "6.3.9",
    "MUST",
    "LSUB with % lists a parent of a subscribed mailbox as \\Noselect when it is not itself "
    "subscribed",
)
def test_lsub_lists_unsubscribed_parents_as_noselect(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        sep = delimiter(client)
        client.create_folder(f"{folder}{sep}a{sep}b")
        client.subscribe_folder(f"{folder}{sep}a{sep}b")
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f'LSUB "" "{folder}{sep}%"')
            listed = [x for x in lines if x.startswith(b"* LSUB ")]
            assert len(listed) == 1, lines
            assert b"\\noselect" in listed[0].lower(), lines
            assert listed[0].rstrip(b'"\r\n').endswith(f"{folder}{sep}a".encode()), lines
        finally:
            raw.close()
            client.unsubscribe_folder(f"{folder}{sep}a{sep}b")
            _delete_quietly(client, f"{folder}{sep}a{sep}b", f"{folder}{sep}a")


def delimiter(client: IMAPClient) -> str:
    """The hierarchy delimiter of the personal namespace (RFC 2342)."""
    personal = client.namespace().personal
    sep = personal[0][1] if personal else "/"
    return sep.decode() if isinstance(sep, bytes) else str(sep or "/")


def _delete_quietly(client: IMAPClient, *names: str) -> None:
    """Delete mailboxes a test made; a parent level may never have existed as a mailbox."""
    for name in names:
        with contextlib.suppress(IMAPClientError):
            client.delete_folder(name)


def _list_extended(target: Target) -> RawImap:
    with imap(target) as client:
        require_capability(client, "LIST-EXTENDED")
    raw = RawImap(target)
    raw.login(target.account)
    return raw


@requirement(
    "RFC5258",
    "3",
    "MUST",
    "an unknown LIST selection option, or RECURSIVEMATCH alone, is refused with BAD",
)
def test_list_unknown_selection_option(target: Target) -> None:
    raw = _list_extended(target)
    try:
        assert tagged(raw.command('LIST (mailspec-unknown) "" ""')).startswith(b"BAD")
        assert tagged(raw.command('LIST (RECURSIVEMATCH) "" ""')).startswith(b"BAD")
        assert tagged(raw.command('LIST (RECURSIVEMATCH REMOTE) "" ""')).startswith(b"BAD")
        assert tagged(raw.command('LIST "" "" RETURN (mailspec-unknown)')).startswith(b"BAD")
        assert tagged(raw.command('LIST (REMOTE) "" "%"')).startswith(b"OK")
    finally:
        raw.close()


@requirement(
    "RFC5258",
    "3.1",
    "MUST",
    "LIST (SUBSCRIBED) lists a subscribed mailbox that no longer exists with \\NonExistent",
)
def test_list_subscribed_nonexistent(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "LIST-EXTENDED")
        sep = delimiter(client)
        gone = f"{folder}{sep}gone"
        client.create_folder(gone)
        client.subscribe_folder(gone)
        client.delete_folder(gone)
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f'LIST (SUBSCRIBED) "" "{folder}{sep}*"')
            listed = [x for x in lines if x.startswith(b"* LIST ")]
            assert len(listed) == 1, lines
            assert b"\\nonexistent" in listed[0].lower(), lines
            assert b"\\subscribed" in listed[0].lower(), lines
        finally:
            raw.close()
            client.unsubscribe_folder(gone)


@requirement(
    "RFC5258",
    "3.5",
    "MUST",
    "LIST (SUBSCRIBED RECURSIVEMATCH) lists an unsubscribed parent of a subscribed mailbox "
    'with CHILDINFO ("SUBSCRIBED")',
)
def test_list_recursivematch_childinfo(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "LIST-EXTENDED")
        sep = delimiter(client)
        child = f"{folder}{sep}p{sep}c"
        client.create_folder(child)
        client.subscribe_folder(child)
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = raw.command(f'LIST (SUBSCRIBED RECURSIVEMATCH) "" "{folder}{sep}%"')
            listed = [x for x in lines if x.startswith(b"* LIST ")]
            assert len(listed) == 1, lines
            assert b"(CHILDINFO (SUBSCRIBED))" in listed[0].upper().replace(b'"', b""), lines
            assert b"\\subscribed" not in listed[0].lower(), lines
        finally:
            raw.close()
            client.unsubscribe_folder(child)
            _delete_quietly(client, child, f"{folder}{sep}p")


# -- MULTIAPPEND (RFC 3502) ---------------------------------------------------------------------


def _multiappend(raw: RawImap, folder: str, parts: list[tuple[bytes, bytes]]) -> list[bytes]:
    """``APPEND folder (flags) {n}...`` with every message sent as a synchronizing literal."""
    raw.counter += 1
    tag = b"m%d" % raw.counter
    line = tag + b" APPEND " + folder.encode()
    for flags, data in parts:
        raw.send(line + b" (" + flags + b") {%d}\r\n" % len(data))
        first = raw.line()
        if not first.startswith(b"+"):
            return [first]
        line = data
    raw.send(line + b"\r\n")
    return raw.until(tag)


@requirement(
    "RFC3502",
    "3",
    "MUST",
    "APPEND with several messages (MULTIAPPEND) stores them all, in order",
)
def test_multiappend(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "MULTIAPPEND")
        toks = [token() for _ in range(3)]
        raw = RawImap(target)
        try:
            raw.login(target.account)
            lines = _multiappend(raw, folder, [(b"\\Seen", message(t)) for t in toks])
            assert tagged(lines).startswith(b"OK"), lines
        finally:
            raw.close()
        client.select_folder(folder)
        uids = client.search(["ALL"])
        assert len(uids) == 3
        ids = client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", b"FLAGS"])
        for uid, tok in zip(sorted(uids), toks, strict=True):
            assert tok.encode() in ids[uid][b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]
            assert b"\\Seen" in ids[uid][b"FLAGS"]


@requirement(
    "RFC3502",
    "3",
    "MUST",
    "a MULTIAPPEND that fails for one message appends none of them",
)
def test_multiappend_all_or_nothing(target: Target) -> None:
    with imap(target) as client, scratch_folder(client) as folder:
        require_capability(client, "MULTIAPPEND")
        raw = RawImap(target)
        try:
            raw.login(target.account)
            parts = [(b"", message(token())), (b"\\NoSuchSystemFlag", message(token()))]
            lines = _multiappend(raw, folder, parts)
            assert not tagged(lines).startswith(b"OK"), lines
        finally:
            raw.close()
        assert client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"] == 0


@both_revisions(
    "2.3.1.1",
    "MUST",
    "UIDNEXT does not change unless new messages are added: flag changes and EXPUNGE keep it",
)
def test_uidnext_moves_only_with_new_messages(target: Target) -> None:
    # "The next unique identifier value ... MUST NOT change unless new messages are added
    # to the mailbox" (RFC 3501 2.3.1.1; RFC 9051 keeps it).
    with imap(target) as client, scratch_folder(client) as folder:
        append(client, folder, message(token()))
        last = append(client, folder, message(token()))

        def uidnext() -> int:
            return int(client.folder_status(folder, [b"UIDNEXT"])[b"UIDNEXT"])

        before = uidnext()
        assert before > last, f"UIDNEXT {before} after UID {last}"
        client.select_folder(folder)
        client.add_flags([last], [b"\\Seen", b"$Label"])
        client.set_flags([last], [b"\\Deleted"])
        client.expunge()
        client.unselect_folder()
        assert uidnext() == before, "UIDNEXT changed without a new message"
        newer = append(client, folder, message(token()))
        assert newer >= before and uidnext() > newer, (before, newer, uidnext())
