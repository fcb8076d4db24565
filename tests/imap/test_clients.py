"""Real client libraries end to end: imapclient and imaplib over STARTTLS and implicit TLS."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from .support import ALICE, MSG, PASSWORD, Start, run


async def test_imapclient_starttls_login_select_search_fetch(start: Start) -> None:
    env = await start()
    env.store.deliver(ALICE, MSG)
    env.store.deliver(ALICE, MSG.replace(b"Hello", b"Again"), flags=["\\Flagged"])

    def session() -> None:
        client = IMAPClient("127.0.0.1", port=env.port, ssl=False, timeout=5)
        assert b"LOGINDISABLED" in client.capabilities()
        client.starttls(env.client_context())
        client.login(ALICE, PASSWORD)
        assert b"AUTH=PLAIN" not in client.capabilities()  # nothing to offer once logged in
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert set(folders) == {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}
        assert b"\\Sent" in folders["Sent"]
        selected = client.select_folder("INBOX")
        assert selected[b"EXISTS"] == 2 and selected[b"UIDNEXT"] == 3
        assert client.search() == [1, 2]
        peeked = client.fetch([1], [b"BODY.PEEK[HEADER]", b"FLAGS", b"RFC822.SIZE"])
        assert peeked[1][b"BODY[HEADER]"] == MSG.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert peeked[1][b"FLAGS"] == (b"\\Recent",) and peeked[1][b"RFC822.SIZE"] == len(MSG)
        fetched = client.fetch([1, 2], [b"RFC822"])
        assert fetched[1][b"RFC822"] == MSG
        assert fetched[1][b"FLAGS"] == (b"\\Recent", b"\\Seen")  # the implicit \Seen is told
        flags = client.fetch([2], [b"BODY[]", b"FLAGS"])[2][b"FLAGS"]
        assert flags == (b"\\Flagged", b"\\Recent", b"\\Seen")
        assert client.search(["UNSEEN"]) == []
        client.logout()

    await run(session)
    with env.store.open(ALICE) as mailbox:
        assert all("\\Seen" in m.flags for m in mailbox.messages())


async def test_imaplib_starttls(start: Start) -> None:
    env = await start()
    env.store.deliver(ALICE, MSG)

    def session() -> None:
        client = imaplib.IMAP4("127.0.0.1", env.port, timeout=5)
        assert "LOGINDISABLED" in client.capabilities
        client.starttls(env.client_context())
        assert "AUTH=PLAIN" in client.capabilities
        assert client.login(ALICE, PASSWORD)[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"1"])
        typ, data = client.fetch("1", "(BODY[])")
        assert typ == "OK" and data[0] == (b"1 (BODY[] {%d}" % len(MSG), MSG)
        client.logout()

    await run(session)


async def test_imapclient_over_implicit_tls(start: Start) -> None:
    env = await start(implicit_tls=True)
    env.store.deliver(ALICE, MSG)

    def session() -> None:
        client = IMAPClient("127.0.0.1", port=env.port, ssl_context=env.client_context())
        assert b"AUTH=PLAIN" in client.capabilities()
        assert b"STARTTLS" not in client.capabilities()
        client.login(ALICE, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        assert client.fetch([1], [b"BODY[]"])[1][b"BODY[]"] == MSG
        client.logout()

    await run(session)
    with env.store.open(ALICE) as mailbox:
        assert mailbox.messages()[0].flags == frozenset()  # EXAMINE never sets \Seen


async def test_imapclient_login_before_starttls_is_refused(start: Start) -> None:
    env = await start()

    def session() -> str:
        client = IMAPClient("127.0.0.1", port=env.port, ssl=False, timeout=5)
        with pytest.raises(IMAPClientError) as refused:
            client.login(ALICE, PASSWORD)
        client.logout()
        return str(refused.value)

    assert "PRIVACYREQUIRED" in await run(session)
