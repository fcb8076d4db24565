"""What every part of an SMTP session shares: its state, its reads and replies, the idle timer.

The command families (``auth``, ``transaction``) and the command loop (``session``) build on
:class:`SessionCore`; nothing here knows a command.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reference.log import event
from reference.mail import replies
from reference.mail.envelope import RecipientDsn
from reference.mail.replies import Reply
from reference.policy import Session, Transaction
from reference.smtp.commands import MailFrom

if TYPE_CHECKING:
    from reference.smtp.server import Listener

__all__ = ["LINE_GUARD", "PROTOCOL_ERRORS", "READ_LIMIT", "Envelope", "SessionCore", "log"]

log = logging.getLogger("mailspec.smtp")

# Protocol errors (500-504, 555): counted, and a session that makes too many is closed.
PROTOCOL_ERRORS = frozenset({500, 501, 502, 503, 504, 555})
# The bound of the stream reader's buffer (asyncio stops reading the socket past twice
# this); lines are bounded by the checks of each reader, not by it.
READ_LIMIT = 64 * 1024
# No command line may be longer than this with its LF (MAIL and RCPT with all their
# parameters take 1000 octets with the CRLF): a longer one is read through and refused whole.
LINE_GUARD = 1002


@dataclass
class Envelope:
    """One mail transaction as the session sees it, from MAIL to the end of data (or RSET)."""

    # None until a MAIL is accepted (its address is "" for the null reverse-path).
    mail: MailFrom | None = None
    recipients: list[str] = field(default_factory=list)
    # RFC 3461: NOTIFY and ORCPT per accepted recipient, ORCPT decoded from its xtext.
    rcpt_dsn: dict[str, RecipientDsn] = field(default_factory=dict)
    # RFC 3030: the chunks of BDAT so far.
    chunks: list[bytes] = field(default_factory=list)
    chunk_octets: int = 0
    chunked: bool = False
    # The policy's transaction, from an accepted MAIL to the end of the data.
    tx: Transaction | None = None

    def close(self) -> None:
        if self.tx is not None:
            self.tx.close()
            self.tx = None


class SessionCore:
    """One client connection: who it is, what it has said, how it is answered."""

    def __init__(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.listener = listener
        self.metrics = listener.metrics
        self.clock = listener.clock
        self.hostname = listener.hostname
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        # (address, port); a PROXY line may name another client.
        self.peer: tuple[str, int] = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.tls = listener.implicit_tls
        # What the client has said of itself: EHLO/HELO, and the account AUTH proved.
        self.helo: str | None = None
        self.extended = False
        self.user: str | None = None
        self.envelope = Envelope()
        self.errors = 0
        self._monotonic = self.clock.monotonic  # touched at every command and data line
        self.last_activity = self._monotonic()

    @property
    def peer_ip(self) -> str:
        return self.peer[0]

    def policy_session(self) -> Session:
        """The session as the checks see it."""
        return Session(
            role=self.listener.role,
            peer=self.peer_ip,
            helo=self.helo or "",
            tls=self.tls,
            user=self.user,
        )

    def new_transaction(self) -> None:
        """Forget the transaction (RSET, EHLO, STARTTLS, the end of the data)."""
        self.envelope.close()
        self.envelope = Envelope()

    async def transaction_allowed(self) -> bool:
        """EHLO/HELO given and, where required, AUTH; replies itself when not."""
        if not self.helo:
            await self.reply(replies.SEND_HELO_FIRST)
            return False
        return await self.authenticated_if_required()

    async def authenticated_if_required(self) -> bool:
        """On submission nothing but EHLO, STARTTLS, AUTH and the harmless verbs goes
        without AUTH; replies 530 5.7.0 when not."""
        if self.listener.role == "submission" and self.user is None:
            await self.reply(replies.AUTH_REQUIRED)
            return False
        return True

    # -- reading ------------------------------------------------------------------------

    async def read_line(self) -> bytes | None:
        """One line with its LF, or None when it was longer than :data:`LINE_GUARD`;
        :class:`asyncio.IncompleteReadError` when the client has gone.

        An over-long line is read to its end, so that no tail of it is ever taken for a
        command of its own.
        """
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as error:
            await self.reader.read(error.consumed)
            while True:
                try:
                    await self.reader.readuntil(b"\n")
                    return None
                except asyncio.LimitOverrunError as more:
                    await self.reader.read(more.consumed)
        return None if len(line) > LINE_GUARD else line

    # -- replies ------------------------------------------------------------------------

    async def reply(self, r: Reply) -> None:
        """Send a reply of the catalogue; protocol errors are counted."""
        if r.code in PROTOCOL_ERRORS:
            self.errors += 1
        if self.metrics is not None:
            self.metrics.replied(r.code, r.enhanced)
        # A reply may echo the client's words (VRFY does), and bytes that are not UTF-8
        # reach us as lone surrogates: send them as '?', never fail the reply.
        self.writer.write(str(r).encode("utf-8", "replace") + b"\r\n")
        await self.writer.drain()

    async def send_line(self, text: str) -> None:
        """Send one line as it is: the greeting, the EHLO lines, the AUTH challenges carry
        no enhanced code (RFC 2034 3)."""
        if self.metrics is not None:
            self.metrics.reply(text)
        self.writer.write(text.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    def close(self) -> None:
        """Hang up (the server stops, the session times out, or a test ends)."""
        self.writer.close()

    # -- the idle timer, on the injected clock ------------------------------------------

    def touch(self) -> None:
        """The client did something: the idle timer starts again."""
        self.last_activity = self._monotonic()

    async def watch_idle(self) -> None:
        """Close the session once it has been idle for the listener's timeout.

        One task per session looks at the time of the last activity, rather than a timer
        set again for every command.
        """
        limit = float(self.listener.timeout)
        while True:
            wait = self.last_activity + limit - self.clock.monotonic()
            if wait <= 0:
                break
            await self.clock.sleep(wait)
        event(log, "timeout", peer=self.peer_ip, idle=limit)
        if not self.writer.is_closing():
            # RFC 5321 4.5.3.2: the server may close an idle session; it says why first.
            t = replies.TIMEOUT
            self.writer.write(f"{t.code} {t.enhanced} {self.hostname} {t.text}\r\n".encode())
            self.close()
