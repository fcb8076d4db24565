"""APPEND: MULTIAPPEND (RFC 3502) all or nothing, APPENDUID sets, literal8 binary parts."""

from __future__ import annotations

from .support import ALICE, MSG, Start, logged_in


async def test_multiappend_stores_all_with_a_uid_set(start: Start) -> None:
    env, raw = await logged_in(start)
    await raw.send(b"a APPEND INBOX {%d+}\r\n%s (\\Seen) {%d+}\r\n%s\r\n" % (
        len(MSG), MSG, len(MSG), MSG))  # fmt: skip
    (line,) = await raw.until(b"a")
    assert line.startswith(b"a OK [APPENDUID ") and line.split()[4] == b"1:2]", line
    with env.store.open(ALICE) as inbox:
        assert inbox.uids() == [1, 2]
        assert "\\Seen" in inbox.get_many([2])[2].flags


async def test_multiappend_failing_late_appends_none(start: Start) -> None:
    env, raw = await logged_in(start)
    await raw.send(b"a APPEND INBOX {%d+}\r\n%s (\\Bogus) {%d+}\r\n%s\r\n" % (
        len(MSG), MSG, len(MSG), MSG))  # fmt: skip
    (line,) = await raw.until(b"a")
    assert not line.startswith(b"a OK"), line
    with env.store.open(ALICE) as inbox:
        assert inbox.uids() == []  # RFC 3502 3: the first one was taken back


async def test_capability_lists_multiappend(start: Start) -> None:
    _, raw = await logged_in(start)
    assert b" MULTIAPPEND" in (await raw.command(b"CAPABILITY"))[0]


async def test_catenate_joins_text_and_urls(start: Start) -> None:
    """RFC 4469 5: TEXT literals and IMAP URLs (whole message, section, partial) joined."""
    env, raw = await logged_in(start)
    uid = env.store.deliver(ALICE, b"From: a@example.net\r\n\r\nfirst body\r\n")
    lines = await raw.command(b"SELECT INBOX")
    validity = (
        next(x for x in lines if b"UIDVALIDITY" in x).split(b"UIDVALIDITY ")[1].split(b"]")[0]
    )
    url = b"/INBOX;UIDVALIDITY=%s/;UID=%d" % (validity, uid)
    command = (
        b'APPEND INBOX CATENATE (URL "%s/;SECTION=HEADER" TEXT {5+}\r\nnew\r\n'
        b' URL "%s/;SECTION=TEXT/;PARTIAL=0.5")' % (url, url)
    )
    assert (await raw.command(command))[-1].startswith(b"t OK [APPENDUID")
    stored = env.store.open(ALICE, "INBOX")
    assert stored.read(stored.uids()[-1]) == b"From: a@example.net\r\n\r\nnew\r\nfirst"
    stored.close()
    bad = b'APPEND INBOX CATENATE (TEXT {2+}\r\nx\n URL "/INBOX;UIDVALIDITY=1/;UID=%d")' % uid
    assert (await raw.command(bad))[-1].startswith(b"t NO [BADURL /INBOX;UIDVALIDITY=1/;UID=")
    missing = b'APPEND Nowhere CATENATE (URL "%s")' % url
    assert (await raw.command(missing))[-1].startswith(b"t NO [TRYCREATE]")
    assert len(env.store.open(ALICE, "INBOX").uids()) == 2  # the refused ones stored nothing
