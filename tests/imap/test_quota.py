"""QUOTA (RFC 9208): over-quota APPEND and COPY, GETQUOTA, GETQUOTAROOT, SETQUOTA."""

from __future__ import annotations

from reference.mailbox import Quota

from .support import MSG, Start, logged_in


async def test_append_over_quota_and_quota_responses(start: Start) -> None:
    _, raw = await logged_in(start, quota=Quota(bytes=4096, messages=2))
    for n in range(2):
        await raw.send(b"a%d APPEND Drafts {%d+}\r\n%s\r\n" % (n, len(MSG), MSG))
        assert (await raw.until(b"a%d" % n))[-1].startswith(b"a%d OK [APPENDUID " % n)
    await raw.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(MSG), MSG))
    assert (await raw.until(b"a"))[-1] == b"a NO [OVERQUOTA] Quota exceeded\r\n"
    lines = await raw.command(b"GETQUOTAROOT INBOX")
    assert lines[:2] == [b'* QUOTAROOT INBOX ""\r\n', b'* QUOTA "" (STORAGE 1 4 MESSAGE 2 2)\r\n']
    assert (await raw.command(b'GETQUOTA ""'))[0] == b'* QUOTA "" (STORAGE 1 4 MESSAGE 2 2)\r\n'
    assert (await raw.command(b"GETQUOTA other"))[-1].startswith(b"t NO [NONEXISTENT]")
    assert (await raw.command(b'SETQUOTA "" (STORAGE 9)'))[-1].startswith(b"t NO [NOPERM]")
    await raw.command(b"SELECT Drafts")
    assert (await raw.command(b"COPY 1 INBOX"))[-1].startswith(b"t NO [OVERQUOTA]")
    assert (await raw.command(b"MOVE 1 INBOX"))[-1].startswith(b"t OK")  # moving adds nothing


async def test_no_quota_means_no_quota_root(start: Start) -> None:
    _, raw = await logged_in(start)
    assert await raw.command(b"GETQUOTAROOT INBOX") == [
        b"* QUOTAROOT INBOX\r\n",
        b"t OK GETQUOTAROOT completed\r\n",
    ]
