"""Several sessions on one mailbox: what each is told of the others' changes (new keywords
in FLAGS first, \\Recent for one session only, FETCH of messages expunged elsewhere), and a
bounded run of concurrent APPEND/STORE/EXPUNGE/FETCH (imaptest's stress mode in small)."""

from __future__ import annotations

import asyncio
import random
import re

from .support import ALICE, MSG, PASSWORD, Raw, Start, logged_in

_FLAGS = re.compile(rb"^\* FLAGS \(([^)]*)\)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


async def second(env: object) -> Raw:
    raw = await Raw.connect(env)  # type: ignore[arg-type]
    login = b'LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode())
    assert (await raw.command(login))[-1].startswith(b"t OK")
    return raw


def keywords_used_before_announced(lines: list[bytes], known: set[bytes]) -> list[bytes]:
    """The keywords of FETCH FLAGS that no earlier ``* FLAGS`` named (updates ``known``)."""
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


async def test_new_keyword_is_announced_in_flags_before_use(start: Start) -> None:
    # RFC 3501 7.2.6 / RFC 9051 7.3.5: FLAGS lists the flags defined in the mailbox; a
    # keyword another session adds is announced (FLAGS, PERMANENTFLAGS) before a FETCH uses it.
    env, a = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    b = await second(env)
    known: set[bytes] = set()
    assert not keywords_used_before_announced(await a.command(b"SELECT INBOX"), known)
    await b.command(b"SELECT INBOX")
    assert (await b.command(b"STORE 1 +FLAGS ($Label1)"))[-1].startswith(b"t OK")
    lines = await a.command(b"NOOP")
    assert not keywords_used_before_announced(lines, known), lines
    assert b"$Label1" in known
    assert any(b"[PERMANENTFLAGS (" in x and b"$Label1" in x for x in lines), lines
    # the session's own STORE of a new keyword too
    lines = await a.command(b"STORE 1 +FLAGS ($Label2)")
    assert not keywords_used_before_announced(lines, known), lines
    # and FETCH of a keyword set behind the session's back (no NOOP in between)
    with env.store.open(ALICE) as mailbox:
        mailbox.change_flags([1], add=["$Label3"])
    lines = await a.command(b"FETCH 1 FLAGS")
    assert not keywords_used_before_announced(lines, known), lines
    # a later SELECT names the mailbox's keywords at once
    lines = await b.command(b"SELECT INBOX")
    assert lines[0].startswith(b"* FLAGS (") and b"$Label3" in lines[0], lines


async def test_recent_goes_to_one_session(start: Start) -> None:
    # RFC 3501 2.3.2: \Recent is set for exactly one session; SELECT reports it (6.3.1),
    # EXAMINE does not take it (6.3.2), and new arrivals go to the first session told.
    env, a = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    b = await second(env)
    assert b"* 1 RECENT\r\n" in await b.command(b"EXAMINE INBOX")
    assert b"* 1 RECENT\r\n" in await a.command(b"SELECT INBOX")
    assert b"* 0 RECENT\r\n" in await b.command(b"SELECT INBOX")
    assert b"\\Recent" in (await a.command(b"FETCH 1 FLAGS"))[0]
    assert b"\\Recent" not in (await b.command(b"FETCH 1 FLAGS"))[0]
    env.store.deliver(ALICE, MSG)
    assert await b.command(b"NOOP") == [
        b"* 2 EXISTS\r\n",
        b"* 1 RECENT\r\n",
        b"t OK NOOP completed\r\n",
    ]
    assert (await a.command(b"NOOP"))[:2] == [b"* 2 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert (await a.command(b"SEARCH RECENT"))[0] == b"* SEARCH 1\r\n"
    assert (await b.command(b"SEARCH RECENT"))[0] == b"* SEARCH 2\r\n"
    status = await a.command(b"STATUS Junk (RECENT)")
    assert status[0] == b"* STATUS Junk (RECENT 0)\r\n", status


async def test_concurrent_sessions_never_hit_a_server_bug(start: Start) -> None:
    # imaptest's stress mode in small: sessions appending (with old dates: tmp/ clean-up),
    # flagging with keywords, expunging and fetching the same mailbox at once. Nothing
    # may end in NO [SERVERBUG] or a failed FETCH, and no keyword may be used unannounced.
    env, first = await logged_in(start)
    for _ in range(10):
        env.store.deliver(ALICE, MSG)
    sessions = [first, *[await second(env) for _ in range(4)]]
    failures: list[bytes] = []
    rng = random.Random(7)

    async def work(raw: Raw, n: int) -> None:
        known: set[bytes] = set()
        lines = await raw.command(b"SELECT INBOX", b"s")
        failures.extend(keywords_used_before_announced(lines, known))
        for i in range(25):
            choice = rng.choice(("append", "store", "expunge", "fetch", "fetch", "noop"))
            if choice == "append":
                data = b"Message-ID: <%d.%d@x>\r\n%s" % (n, i, MSG)
                await raw.send(b'a APPEND INBOX ($Label%d) "01-Jan-2001 00:00:00 +0000" {%d+}\r\n'
                               % (i % 5, len(data)) + data + b"\r\n")  # fmt: skip
                lines = await raw.until(b"a")
            elif choice == "store":
                flag = rng.choice((b"\\Deleted", b"\\Seen", b"$Label%d" % rng.randrange(9)))
                lines = await raw.command(b"STORE 1:* +FLAGS (" + flag + b")", b"a")
            elif choice == "expunge":
                lines = await raw.command(b"EXPUNGE", b"a")
            elif choice == "fetch":
                lines = await raw.command(b"FETCH 1:* (FLAGS BODY.PEEK[] BODYSTRUCTURE)", b"a")
                if lines[-1].startswith(b"a NO"):
                    failures.append(lines[-1])
            else:
                lines = await raw.command(b"NOOP", b"a")
            failures.extend(keywords_used_before_announced(lines, known))
            failures.extend(x for x in lines if b"SERVERBUG" in x)

    await asyncio.wait_for(asyncio.gather(*(work(r, n) for n, r in enumerate(sessions))), 120)
    assert failures == []
