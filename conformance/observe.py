"""Reading delivered mail back through the target's own mailbox access, as an operator would.

A content requirement (8-bit transparency, dot transparency, long lines, BDAT octets) is
only checked once the suite has seen what arrived. Any platform with mailbox access can
show it: the suite logs in with the test account over the target's IMAP (``imaps``, or
``imap`` with STARTTLS) or, failing that, POP3 (``pop3s``, or ``pop3`` with STLS), finds
the message by the token in its Message-ID, and waits a bounded time for it. A target
offering neither, or no test account, makes the requirement not applicable with that
reason: never a pass.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import ssl
import time

from conformance.requirements import not_applicable
from conformance.target import Account, Endpoint, Target

__all__ = ["OBSERVATION_ROLES", "Observer", "find_delivered", "observer"]

# In order of preference: IMAP can search without downloading the whole mailbox.
OBSERVATION_ROLES = ("imaps", "imap", "pop3s", "pop3")
_POLL = 0.05


class Observer:
    """Finds one message by a token in its Message-ID in the test account's mailbox."""

    def __init__(self, target: Target, endpoint: Endpoint, account: Account) -> None:
        self.target = target
        self.endpoint = endpoint
        self.account = account

    @property
    def how(self) -> str:
        return f"{self.endpoint.role} as {self.account.address}"

    def wait(self, token: str, timeout: float = 10.0) -> bytes:
        """The whole message (as the mailbox serves it) once it has arrived."""
        find = self._imap if self.endpoint.protocol == "imap" else self._pop3
        return find(token, timeout)

    # -- IMAP

    def _imap_login(self) -> imaplib.IMAP4:
        ep, ctx = self.endpoint, self._context()
        conn: imaplib.IMAP4
        if ep.implicit_tls:
            conn = imaplib.IMAP4_SSL(ep.host, ep.port, ssl_context=ctx, timeout=self.target.timeout)
        else:
            conn = imaplib.IMAP4(ep.host, ep.port, timeout=self.target.timeout)
            conn.starttls(ctx)
        conn.login(self.account.address, self.account.password)
        return conn

    def _imap(self, token: str, timeout: float) -> bytes:
        conn = self._imap_login()
        try:
            folders = ["INBOX", *_junk_folders(conn)]
            deadline = time.monotonic() + timeout
            while True:
                for folder in folders:
                    found = _imap_find(conn, folder, token)
                    if found is not None:
                        return found
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"no message with {token} reached {self.account.address} "
                        f"(looked in {', '.join(folders)} over {self.how}) in {timeout}s"
                    )
                time.sleep(_POLL)
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    # -- POP3

    def _pop3(self, token: str, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            # A POP3 session sees the maildrop as it was at login: a new one each look.
            client = self._pop3_login()
            try:
                found = _pop3_find(client, token)
                with contextlib.suppress(Exception):
                    client.quit()
            finally:
                with contextlib.suppress(Exception):
                    client.close()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no message with {token} reached {self.account.address} "
                    f"(over {self.how}) in {timeout}s"
                )
            time.sleep(_POLL)

    def _pop3_login(self) -> poplib.POP3:
        ep, ctx = self.endpoint, self._context()
        client: poplib.POP3
        if ep.implicit_tls:
            client = poplib.POP3_SSL(ep.host, ep.port, context=ctx, timeout=self.target.timeout)
        else:
            client = poplib.POP3(ep.host, ep.port, timeout=self.target.timeout)
            client.stls(ctx)
        client.user(self.account.address)
        client.pass_(self.account.password)
        return client

    def _context(self) -> ssl.SSLContext:
        ctx = self.target.ssl_context()
        name = self.target.server_name(self.endpoint)
        if name != self.endpoint.host and ctx.check_hostname:
            # imaplib and poplib verify the host they connected to; an endpoint given as an
            # address needs the configured name, which a wrapped context supplies.
            ctx = _wrap_with_name(ctx, self.target)
        return ctx


def _wrap_with_name(ctx: ssl.SSLContext, target: Target) -> ssl.SSLContext:
    # The chain is still verified against the target's trust anchor; the name is the one
    # the target file gives, which the library cannot be told (as in the IMAP tests).
    named = ssl.create_default_context()
    named.check_hostname = False
    named.verify_mode = ctx.verify_mode
    if target.tls.cafile:
        named.load_verify_locations(str(target.tls.cafile))
    return named


def _junk_folders(conn: imaplib.IMAP4) -> list[str]:
    # A platform may file the suite's plain test messages as junk; look there too.
    status, lines = conn.list()
    if status != "OK":
        return []
    out = []
    for line in lines:
        if not isinstance(line, bytes) or b"\\junk" not in line.lower():
            continue
        name = line.rsplit(b" ", 1)[-1].strip(b'"').decode("utf-8", "replace")
        out.append(name)
    return out


def _imap_find(conn: imaplib.IMAP4, folder: str, token: str) -> bytes | None:
    status, _ = conn.select(f'"{folder}"', readonly=True)
    if status != "OK":
        return None
    status, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"{token}"')
    uids = (data[0] or b"").split() if status == "OK" and data else []
    if not uids:
        return None
    status, fetched = conn.uid("FETCH", uids[-1].decode(), "(BODY.PEEK[])")
    for part in fetched:
        if isinstance(part, tuple) and len(part) == 2:
            return bytes(part[1])
    raise AssertionError(f"FETCH BODY.PEEK[] of UID {uids[-1]!r} in {folder}: {fetched!r}")


def _pop3_find(client: poplib.POP3, token: str) -> bytes | None:
    count = client.stat()[0]
    needle = f"{token}@".encode()
    for n in range(count, 0, -1):
        head = b"\r\n".join(client.top(n, 0)[1])
        if needle in head:
            # poplib undoes the byte-stuffing of the multi-line response (RFC 1939 3).
            return b"\r\n".join(client.retr(n)[1]) + b"\r\n"
    return None


def observer(target: Target) -> Observer:
    """How this target lets the suite read delivered mail; not applicable if it does not."""
    ep = next((target.endpoints[r] for r in OBSERVATION_ROLES if r in target.endpoints), None)
    if ep is None:
        not_applicable(
            f"target {target.name!r} offers no mailbox access (no imap, imaps, pop3 or "
            "pop3s endpoint): the suite cannot see what was delivered"
        )
    if not target.accounts:
        not_applicable(
            f"target {target.name!r} has no test account: the suite cannot read what was delivered"
        )
    return Observer(target, ep, target.accounts[0])


def find_delivered(target: Target, token: str, timeout: float = 10.0) -> bytes:
    """The message whose Message-ID carries ``token``, read from the test account's mailbox."""
    return observer(target).wait(token, timeout)
