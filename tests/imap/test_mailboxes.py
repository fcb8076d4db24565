"""CREATE and DELETE: modified UTF-7 and UTF-8 names, deleting the selected mailbox."""

from __future__ import annotations

from .support import ALICE, Start, logged_in, run


async def test_mailbox_names_in_modified_utf7_and_utf8(start: Start) -> None:
    env, raw = await logged_in(start)
    assert (await raw.command(b"CREATE Entw&APw-rfe"))[-1].startswith(b"t OK")
    assert "Entwürfe" in await run(lambda: env.store.folders(ALICE))
    assert b'"/" Entw&APw-rfe\r\n' in (await raw.command(b'LIST "" Entw*'))[0]
    await raw.command(b"ENABLE UTF8=ACCEPT")
    listed = (await raw.command(b'LIST "" Entw*'))[0]
    assert listed.endswith(b'"/" {9}\r\n') or "Entwürfe".encode() in listed


async def test_delete_the_selected_mailbox(start: Start) -> None:
    _, raw = await logged_in(start)
    await raw.command(b"CREATE Tmp")
    await raw.command(b"SELECT Tmp")
    assert (await raw.command(b"DELETE Tmp"))[-1] == b"t OK DELETE completed\r\n"
    assert (await raw.command(b"FETCH 1 FLAGS"))[-1].startswith(b"t BAD")


async def test_create_with_special_use(start: Start) -> None:
    """RFC 6154 3: CREATE (USE (...)) gives the folder its use; LIST shows it, RENAME keeps
    it, DELETE forgets it; a use that cannot be is NO [USEATTR]."""
    _, raw = await logged_in(start)
    assert (await raw.command(b"CREATE Old (USE (\\archive))"))[-1].startswith(b"t OK")
    await raw.command(b"RENAME Old Kept")
    lines = await raw.command(b'LIST (SPECIAL-USE) "" "*"')
    assert b'* LIST (\\Archive) "/" Kept\r\n' in lines
    assert b'* LIST (\\Archive) "/" Archive\r\n' in lines
    assert (await raw.command(b"CREATE V (USE (\\All))"))[-1].startswith(b"t NO [USEATTR]")
    await raw.command(b"DELETE Kept")
    await raw.command(b"CREATE Kept")
    lines = await raw.command(b'LIST "" Kept')
    assert lines[0] == b'* LIST (\\HasNoChildren) "/" Kept\r\n'
