"""Helpers of the Sieve and ManageSieve requirements: a user with a script of their own,
mail sent to them through the MX, and what their folders (and the fake internet) got."""

from __future__ import annotations

import contextlib
import email
import imaplib
import secrets
import time
from collections.abc import Iterator
from typing import Any

from conformance.managesieve_client import ManageSieveClient
from conformance.plugin import SMTPConnector
from conformance.requirements import not_applicable
from conformance.target import Account, Target
from conformance.tests.outbound_support import fresh_user, message

__all__ = [
    "Scripts",
    "folder_messages",
    "mail_to",
    "own_scripts",
    "remote_sender",
    "settle",
    "sieve_session",
    "sieve_user",
    "wait_for",
    "with_script",
]


# Message-IDs mail_to sent since the current with_script began: where the suite cannot make a
# fresh account, the tests share one mailbox, and each reads only the mail it sent.
_SENT: set[str] = set()


def sieve_user(target: Target) -> Account:
    """A fresh account where the suite may make one, else the second test account."""
    if target.has("admin"):
        return fresh_user(target, "sieve")
    return target.second_account


@contextlib.contextmanager
def sieve_session(target: Target, account: Account | None = None) -> Iterator[ManageSieveClient]:
    """A ManageSieve session past STARTTLS and AUTHENTICATE PLAIN."""
    ep = target.endpoint("managesieve")
    client = ManageSieveClient.connect(ep.host, ep.port, target.timeout)
    try:
        assert client.greeting.ok, f"greeting: {client.greeting}"
        reply, _ = client.starttls(target.ssl_context(), target.server_name(ep))
        assert reply.ok, f"STARTTLS: {reply}"
        if account is not None:
            auth = client.authenticate(account.address, account.password)
            assert auth.ok, f"AUTHENTICATE PLAIN as {account.address}: {auth}"
        yield client
    finally:
        with contextlib.suppress(OSError):
            client.command(b"LOGOUT")
        client.close()


class Scripts:
    """A ManageSieve session whose script names carry a prefix of their own, so a test sees
    (and cleans up) only its own scripts on an account other tests use too."""

    def __init__(self, client: ManageSieveClient) -> None:
        self.client = client
        self.prefix = f"suite-{secrets.token_hex(3)}-"

    def name(self, short: str) -> str:
        return self.prefix + short

    def listing(self) -> dict[str, bool]:
        """The test's own scripts by short name, and whether each is active."""
        _, scripts = self.client.listscripts()
        n = len(self.prefix)
        return {k[n:]: v for k, v in scripts.items() if k.startswith(self.prefix)}


@contextlib.contextmanager
def own_scripts(target: Target) -> Iterator[Scripts]:
    """A logged-in session for a test's own scripts; none of them is left behind."""
    with sieve_session(target, sieve_user(target)) as c:
        scripts = Scripts(c)
        try:
            yield scripts
        finally:
            _, left = c.listscripts()
            mine = {k: v for k, v in left.items() if k.startswith(scripts.prefix)}
            if any(mine.values()):
                c.command(b"SETACTIVE", b'""')
            for name in mine:
                c.command(b"DELETESCRIPT", f'"{name}"'.encode())


@contextlib.contextmanager
def with_script(target: Target, account: Account, script: str) -> Iterator[None]:
    """``script`` stored and active for the test; the account has no script after it."""
    name = f"suite-{secrets.token_hex(3)}"
    _SENT.clear()
    with sieve_session(target, account) as c:
        put = c.putscript(name, script)
        assert put.ok, f"PUTSCRIPT: {put}"
        active = c.command(b"SETACTIVE", f'"{name}"'.encode())
        assert active.ok, f"SETACTIVE: {active}"
    try:
        yield
    finally:
        with sieve_session(target, account) as c:
            c.command(b"SETACTIVE", b'""')
            c.command(b"DELETESCRIPT", f'"{name}"'.encode())


def mail_to(
    smtp: SMTPConnector,
    account: Account,
    subject: str,
    *,
    sender: str = "sender@remote.example",
    headers: tuple[str, ...] = (),
    to: str | None = None,
    body: str = "",
) -> str:
    """One message through the MX; returns its Message-ID."""
    data = message(
        sender or "mailer-daemon@remote.example",
        [to or account.address],
        subject,
        headers=headers,
        body=body,
    )
    client = smtp.session("smtp")
    client.mail(sender).expect(250, doing=f"MAIL FROM:<{sender}>")
    client.rcpt(account.address).expect(250, doing="RCPT TO")
    client.data(data).expect(250, doing="DATA")
    for line in data.split(b"\r\n"):
        if line.startswith(b"Message-ID:"):
            msgid = line.split(b":", 1)[1].strip().decode()
            _SENT.add(msgid)
            return msgid
    raise AssertionError("no Message-ID")  # pragma: no cover


def _imap(target: Target, account: Account) -> imaplib.IMAP4:
    ctx = target.ssl_context()
    conn: imaplib.IMAP4
    if "imaps" in target.endpoints:
        ep = target.endpoint("imaps")
        conn = imaplib.IMAP4_SSL(ep.host, ep.port, ssl_context=ctx, timeout=target.timeout)
    else:
        ep = target.endpoint("imap")
        conn = imaplib.IMAP4(ep.host, ep.port, timeout=target.timeout)
        conn.starttls(ctx)
    conn.login(account.address, account.password)
    return conn


def folder_messages(
    target: Target, account: Account, folder: str = "INBOX"
) -> list[tuple[bytes, bytes]]:
    """(flags, message) of every message in ``folder``, read over IMAP; [] if no folder.

    On a shared account (the target grants no "admin"), only the messages this test sent."""
    shared = not target.has("admin")
    conn = _imap(target, account)
    try:
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        _, data = conn.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, fetched = conn.fetch(num, "(FLAGS BODY.PEEK[])")
            for part in fetched:
                if isinstance(part, tuple) and (not shared or _sent_here(bytes(part[1]))):
                    out.append((bytes(part[0]), bytes(part[1])))
        return out
    finally:
        with contextlib.suppress(Exception):
            conn.logout()


def _sent_here(msg: bytes) -> bool:
    head = msg.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    msgid = email.message_from_string(head + "\r\n\r\n").get("Message-ID", "")
    return msgid.strip() in _SENT


def wait_for(target: Target, account: Account, folder: str, want: int) -> list[tuple[bytes, bytes]]:
    """The folder's messages once it holds ``want`` (or what it has after the timeout)."""
    deadline = time.monotonic() + 10
    while True:
        got = folder_messages(target, account, folder)
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def settle(target: Target) -> None:
    """Let the target's queue finish what it has (before checking nothing went out)."""
    wait = getattr(target.admin, "wait_delivered", None)
    if wait is not None:
        wait()
    else:
        time.sleep(2.0)  # no insight into the target's queue: give it a moment


def remote_sender(fake_internet: Any, fake_dns: Any) -> tuple[str, Any]:
    """An address at a domain of its own whose mail the fake provider receives: automatic
    replies to it are seen there. (No SPF or DMARC: its mail passes our MX.)"""
    if fake_internet is None:
        not_applicable("the target has no fake internet to see replies")
    provider = fake_internet.providers["gmail"]
    domain = f"s{secrets.token_hex(4)}.sieve.test"
    fake_dns.add(domain, "MX", f"10 {provider.mx_host}.")
    return f"someone@{domain}", provider.mx
