"""NOTIFY (RFC 5465): the state of other mailboxes to start from, their news before each
tagged reply and while IDLE, mailbox and subscription changes, events not supported."""

from __future__ import annotations

from .support import ALICE, MSG, Raw, Start, logged_in


async def test_notify_status_of_other_mailboxes(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.create_folder(ALICE, "Lists")
    env.store.deliver(ALICE, MSG, folder="Lists")
    lines = await raw.command(b"NOTIFY SET STATUS (MAILBOXES Lists (MessageNew MessageExpunge))")
    assert lines[0].startswith(b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ")
    assert (await raw.command(b"NOOP")) == [b"t OK NOOP completed\r\n"]  # nothing new
    env.store.deliver(ALICE, MSG, folder="Lists")
    lines = await raw.command(b"NOOP")
    assert lines[0].startswith(b"* STATUS Lists (MESSAGES 2 UIDNEXT 3 UIDVALIDITY ")
    env.store.deliver(ALICE, MSG)  # INBOX is not watched
    assert (await raw.command(b"NOOP")) == [b"t OK NOOP completed\r\n"]
    assert (await raw.command(b"NOTIFY NONE"))[-1] == b"t OK NOTIFY completed\r\n"
    env.store.deliver(ALICE, MSG, folder="Lists")
    assert (await raw.command(b"NOOP")) == [b"t OK NOOP completed\r\n"]


async def test_notify_mailbox_names_and_subscriptions(start: Start) -> None:
    env, raw = await logged_in(start)
    lines = await raw.command(b"NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
    assert lines == [b"t OK NOTIFY completed\r\n"]  # no STATUS without being asked
    other = await Raw.connect(env)
    await other.command(b'LOGIN alice@example.org "correct horse"')
    await other.command(b"CREATE Projects")
    await other.command(b"SUBSCRIBE Projects")
    lines = await raw.command(b"NOOP")
    assert lines[:2] == [
        b'* LIST () "/" Projects\r\n',
        b'* LIST (\\Subscribed) "/" Projects\r\n',
    ]
    await other.command(b"DELETE Projects")
    assert (await raw.command(b"NOOP"))[0] == b'* LIST (\\NonExistent) "/" Projects\r\n'


async def test_notify_while_idle_in_authenticated_state(start: Start) -> None:
    env, raw = await logged_in(start)
    await raw.command(b"NOTIFY SET (INBOXES (MessageNew MessageExpunge))")
    await raw.send(b"i IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    env.store.deliver(ALICE, MSG)
    env.clock.advance(10)  # the poll for other processes' changes
    assert (await raw.line()).startswith(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 ")
    await raw.send(b"DONE\r\n")
    assert (await raw.until(b"i"))[-1] == b"i OK IDLE terminated\r\n"


async def test_notify_refuses_unsupported_events(start: Start) -> None:
    _, raw = await logged_in(start)
    lines = await raw.command(b"NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge))")
    assert lines[-1].startswith(b"t NO [BADEVENT (MessageNew MessageExpunge FlagChange")
    lines = await raw.command(b"NOTIFY SET (PERSONAL (AnnotationChange))")
    assert lines[-1].startswith(b"t NO [BADEVENT")
    assert (await raw.command(b"NOTIFY SET (NOWHERE (MessageNew))"))[-1].startswith(b"t BAD")
