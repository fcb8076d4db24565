"""LIST and LSUB: patterns, parent levels, subscriptions, LIST-EXTENDED selection options."""

from __future__ import annotations

from .support import ALICE, Start, logged_in, run


async def test_list_patterns(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.create_folder(ALICE, "Lists/python")
    assert (await raw.command(b'LIST "" ""'))[0] == b'* LIST (\\Noselect) "/" ""\r\n'
    top = await raw.command(b'LIST "" %')
    assert b'* LIST (\\Noselect \\HasChildren) "/" Lists\r\n' in top  # only a parent level
    assert b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n' in top
    assert all(b"python" not in line for line in top)
    assert (await raw.command(b'LIST "" inbox'))[0] == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    nested = await raw.command(b'LIST Lists "/*"')
    assert nested[0] == b'* LIST (\\HasNoChildren) "/" Lists/python\r\n'


async def test_list_subscribed_marks_vanished_mailboxes(start: Start) -> None:
    env, raw = await logged_in(start)
    await raw.command(b"CREATE Gone")
    await raw.command(b"SUBSCRIBE Gone")
    await run(lambda: env.store.delete_folder(ALICE, "Gone") or env.store.subscribe(ALICE, "Gone"))
    lines = await raw.command(b'LIST (SUBSCRIBED) "" *')
    assert b'* LIST (\\NonExistent \\Subscribed) "/" Gone\r\n' in lines
    # RFC 5258 4: with the extended syntax, children are told when RETURN (CHILDREN) asks.
    assert b'* LIST (\\Subscribed \\Sent) "/" Sent\r\n' in lines
    assert (await raw.command(b'LIST (RECURSIVEMATCH) "" *'))[-1].startswith(b"t BAD")


async def test_list_extended_options(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.create_folder(ALICE, "P/a")
    env.store.create_folder(ALICE, "P/b/c")
    env.store.subscribe(ALICE, "P/a")
    env.store.subscribe(ALICE, "P/b/c")
    for bad in (
        b'LIST (NOSUCH) "" ""',
        b'LIST (RECURSIVEMATCH REMOTE) "" ""',
        b'LIST "" "" RETURN (X)',
    ):
        assert (await raw.command(bad))[-1].startswith(b"t BAD"), bad  # RFC 5258 3
    assert (await raw.command(b'LIST (REMOTE) "" %'))[-1].startswith(b"t OK")
    lines = await raw.command(b'LIST (SUBSCRIBED RECURSIVEMATCH) "" P/%')
    assert lines[:-1] == [
        b'* LIST (\\Subscribed) "/" P/a\r\n',
        b'* LIST (\\Noselect) "/" P/b ("CHILDINFO" ("SUBSCRIBED"))\r\n',
    ]
    lines = await raw.command(b'LSUB "" P/%')  # RFC 3501 6.3.9
    assert lines[:-1] == [b'* LSUB () "/" P/a\r\n', b'* LSUB (\\Noselect) "/" P/b\r\n']
    lines = await raw.command(b'LIST "" P/% RETURN (CHILDREN)')
    assert b'* LIST (\\Noselect \\HasChildren) "/" P/b\r\n' in lines
