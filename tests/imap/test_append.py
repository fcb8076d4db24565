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
