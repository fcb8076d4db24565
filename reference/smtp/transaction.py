"""The mail transaction: MAIL, RCPT, DATA and BDAT, and the hand-off of each stage to the
policy and of the accepted message to the spool.

- a message with a bare LF or bare CR is refused, so no end-of-data variant can smuggle a
  second message (CVE-2023-51764 family);
- MAIL and RCPT take the DSN parameters (RFC 3461) and AUTH= (RFC 4954 5), kept for the
  spool; BDAT (RFC 3030 CHUNKING) next to DATA.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from reference import faults
from reference.log import event
from reference.mail import replies
from reference.mail.envelope import DsnRequest, RecipientDsn
from reference.mail.message import Message
from reference.mail.replies import Reply
from reference.mail.xtext import xtext_decode
from reference.policy import Session
from reference.smtp.commands import CommandError, parse_bdat, parse_mail, parse_rcpt
from reference.smtp.core import SessionCore, log
from reference.spool import QueueEntry, SpoolError

__all__ = ["DATA_LINE_LIMIT", "TransactionCommands"]

# RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF, plus the dot that
# transparency may add.
DATA_LINE_LIMIT = 1001
_CHUNK_READ = 64 * 1024


class TransactionCommands(SessionCore):
    async def mail(self, arg: str | None) -> None:
        if not await self.transaction_allowed():
            return
        if self.envelope.mail is not None:
            await self.reply(replies.NESTED_MAIL)
            return
        try:
            cmd = parse_mail(arg, extended=self.extended)
        except CommandError as e:
            await self.reply(e.reply)
            return
        limit = self.listener.max_message_size
        # RFC 1870 6: a declared size over the fixed maximum is refused at once.
        if cmd.size is not None and limit and cmd.size > limit:
            await self.reply(
                replies.MESSAGE_TOO_BIG.with_text(
                    f"Message size exceeds fixed maximum message size ({limit})"
                )
            )
            return
        self.envelope.close()  # a transaction refused earlier leaves nothing running
        # When delivery falls behind, the reply waits for it a while (bounded); past
        # smtp.max_backlog the back-pressure check answers 451 4.3.2.
        listener = self.listener
        waited = await listener.spool.wait_for_room(
            listener.flow_backlog, listener.flow_delay, listener.flow_lag
        )
        if waited:
            event(log, "mail.delayed", peer=self.peer_ip, seconds=round(waited, 3))
        policy = self.listener.policy
        tx = policy.begin(self.policy_session(), cmd.address, cmd.size)
        result = await policy.mail(tx)
        if result.refuses and result.reply:
            tx.close()
            event(
                log,
                "mail.refused",
                peer=self.peer_ip,
                sender=cmd.address or "<>",
                reply=result.reply.code,
                reason=result.reason,
            )
            await self.reply(result.reply)
            return
        self.envelope.tx, self.envelope.mail = tx, cmd
        await self.reply(replies.SENDER_OK)

    async def rcpt(self, arg: str | None) -> None:
        if not await self.transaction_allowed():
            return
        env = self.envelope
        if env.mail is None or env.tx is None:
            await self.reply(replies.NEED_MAIL)
            return
        try:
            cmd = parse_rcpt(arg, extended=self.extended, smtputf8=env.mail.smtputf8)
        except CommandError as e:
            await self.reply(e.reply)
            return
        if len(env.recipients) >= self.listener.max_recipients:
            # RFC 5321 4.5.3.1.10: too many recipients is a 452, and the client retries.
            await self.reply(replies.TOO_MANY_RECIPIENTS)
            return
        policy = self.listener.policy
        address = policy.canonical_recipient(cmd.address)
        tx = env.tx
        result = await policy.rcpt(tx, address)
        if result.refuses and result.reply:
            event(
                log,
                "rcpt.refused",
                peer=tx.peer,
                sender=env.mail.address or "<>",
                rcpt=address,
                reply=result.reply.code,
                reason=result.reason,
            )
            await self.reply(result.reply)
            return
        tx.recipients.append(address)
        env.recipients.append(address)
        if cmd.notify is not None or cmd.orcpt is not None:
            kind, _, xtext = (cmd.orcpt or "").partition(";")
            orcpt = (kind, xtext_decode(xtext)) if cmd.orcpt else None
            env.rcpt_dsn[address] = RecipientDsn(cmd.notify, orcpt)
        await self.reply(replies.RECIPIENT_OK)

    async def data(self, arg: str | None) -> None:
        if not await self.transaction_allowed():
            return
        env = self.envelope
        if env.mail is None:
            await self.reply(replies.NEED_MAIL)
            return
        if not env.recipients:
            await self.reply(replies.NEED_RCPT)
            return
        if env.chunked:
            await self.reply(replies.DATA_AFTER_BDAT)
            return
        if arg:
            await self.reply(replies.SYNTAX_DATA)
            return
        await self.reply(replies.START_DATA)
        content, problem = await self.read_data()
        if problem is not None or content is None:
            self.new_transaction()
            await self.reply(problem or replies.TEMP_LOCAL_ERROR)
            return
        await self.accept(content)

    async def read_data(self) -> tuple[bytes | None, Reply | None]:
        """Mail data up to CRLF.CRLF, unstuffed (RFC 5321 4.5.2), or the reason to refuse it.

        The whole of the data is read whatever goes wrong, so that nothing in it is ever
        taken for a command; only ``.`` alone on a CRLF line ends it (RFC 5321 4.1.1.4).
        """
        limit = self.listener.max_message_size
        readuntil, touch = self.reader.readuntil, self.touch
        lines: list[bytes] = []
        size = 0
        # While every line fits, each is only unstuffed and kept: a message is some fifty
        # lines, and this loop is the cost of each. A line is read to its first CRLF, so any
        # other CR or LF in it is bare: those are looked for once, in the whole.
        while True:
            try:
                line = await readuntil(b"\r\n")
            except asyncio.LimitOverrunError:
                line = b""  # read again, and through, below
                break
            touch()
            if line == b".\r\n":
                content = b"".join(lines)
                if _has_bare_newline(content):
                    return None, replies.BARE_NEWLINE_DATA
                return content, None
            if len(line) > DATA_LINE_LIMIT or (limit and size + len(line) > limit):
                break
            size += len(line)
            lines.append(line[1:] if line.startswith(b".") else line)
        bare = _has_bare_newline(b"".join(lines))
        lines.clear()
        return None, await self._read_through(line, size, bare)

    async def _read_through(self, line: bytes, size: int, bare: bool) -> Reply:
        """The rest of a message that is refused, from ``line`` (b"": from the reader) to
        its end: nothing of it kept, only why it is refused."""
        limit = self.listener.max_message_size
        mid_line = False  # after a piece of an over-long line, until its CRLF
        too_big = too_long = False
        while True:
            if not line:
                try:
                    line = await self.reader.readuntil(b"\r\n")
                except asyncio.LimitOverrunError as e:
                    piece = await self.reader.read(e.consumed)
                    size += len(piece)
                    too_long = mid_line = True
                    # Pieces never end inside a CRLF, so any CR or LF here is bare.
                    bare = bare or b"\r" in piece or b"\n" in piece
                    continue
                self.touch()
                if not mid_line and line == b".\r\n":
                    break
            size += len(line)
            body = line[:-2]
            bare = bare or b"\n" in body or b"\r" in body
            too_big = too_big or bool(limit and size > limit)
            too_long = too_long or mid_line or len(line) > DATA_LINE_LIMIT
            mid_line = False
            line = b""
        if too_big:
            return replies.MESSAGE_TOO_BIG
        if bare:
            return replies.BARE_NEWLINE_DATA
        return replies.DATA_LINE_TOO_LONG  # what sent the data here, if neither of those

    async def bdat(self, arg: str | None) -> None:
        try:
            size, last = parse_bdat(arg)
        except CommandError as e:
            await self.reply(e.reply)
            return
        env = self.envelope
        problem: Reply | None = None
        if not self.helo:
            problem = replies.SEND_HELO_EHLO_FIRST
        elif self.listener.role == "submission" and self.user is None:
            problem = replies.AUTH_REQUIRED
        elif env.mail is None:
            problem = replies.NEED_MAIL
        elif not env.recipients:
            problem = replies.NEED_RCPT
        # RFC 3030 2: the chunk follows the command at once, whatever the reply will be:
        # read all of it, so that none of it is ever taken for a command.
        if problem is not None and faults.active("smtp.bdat-refused-chunk-unread"):
            await self.reply(problem)
            return
        keep = problem is None
        remaining = size
        limit = self.listener.max_message_size
        while remaining:
            piece = await self.reader.readexactly(min(remaining, _CHUNK_READ))
            remaining -= len(piece)
            self.touch()
            if keep:
                env.chunk_octets += len(piece)
                if limit and env.chunk_octets > limit:
                    keep = False
                    problem = replies.MESSAGE_TOO_BIG
                    env.chunks.clear()
                else:
                    env.chunks.append(piece)
        if problem is not None:
            if problem is replies.MESSAGE_TOO_BIG:
                # The transaction is over: later chunks of it get 503.
                self.new_transaction()
            await self.reply(problem)
            return
        env.chunked = True
        if not last:
            await self.reply(replies.CHUNK_RECEIVED.with_text(f"{size} octets received"))
            return
        content = b"".join(env.chunks)
        env.chunks.clear()
        if _has_bare_newline(content):
            # Not BINARYMIME: the content is text lines, and it may leave by DATA later.
            self.new_transaction()
            await self.reply(replies.BARE_NEWLINE_DATA)
            return
        await self.accept(content)

    async def accept(self, content: bytes) -> None:
        """The message is whole: the policy decides, the spool keeps it, the client hears."""
        try:
            r = await self.hand_off(content)
        finally:
            self.new_transaction()
        if r.positive:
            self.errors = 0
        await self.reply(r)

    async def hand_off(self, content: bytes) -> Reply:
        """The DATA checks, then the spool: the reply to the end of the data."""
        # The queue id comes before the DATA checks (as Postfix's cleanup has one before the
        # milters run): what they log about the message, refused or not, carries it.
        spool = self.listener.spool
        qid = spool.new_qid()
        env = self.envelope
        tx, mail = env.tx, env.mail
        assert tx is not None and mail is not None, "data before an accepted MAIL"
        s = tx.session
        # The one parse of the message: every check reads this value.
        received = Message(content)
        tx.message, tx.qid = received, qid
        sender = tx.sender
        rcpts = list(env.recipients)
        result = await self.listener.policy.data(tx)
        if result.refuses and result.reply:
            event(
                log,
                "data.refused",
                qid=qid,
                peer=s.peer,
                sender=sender or "<>",
                reply=result.reply.code,
                reason=result.reason,
            )
            return result.reply
        # Checks that accept may edit the header (Authentication-Results, a signature) and
        # decide where the message goes (a folder, a lane); the trace header goes on top.
        data = _received(s, qid, rcpts, self.hostname, self.clock.now(), utf8=mail.smtputf8)
        data += result.edit(received)
        enqueue = functools.partial(
            spool.enqueue,
            sender,
            rcpts,
            data,
            qid=qid,
            lane=result.filing.lane or "regular",
            folder=result.filing.folder,
            role=s.role,
            peer=s.peer,
            user=s.user,
            body=mail.body,
            smtputf8=mail.smtputf8,
            # RFC 3461: RET and ENVID (as sent, in xtext), NOTIFY and ORCPT per recipient.
            dsn=DsnRequest(mail.ret, mail.envid, dict(env.rcpt_dsn)),
            # Delivered by this process, from memory, under a claim held from the start.
            claim=self.listener.on_queued is not None,
        )
        if faults.active("smtp.ack-before-spool"):
            task = asyncio.create_task(self._spool_later(enqueue, qid, s, sender, rcpts, data))
            _LATER.add(task)
            task.add_done_callback(_LATER.discard)
            return replies.QUEUED.with_text(f"Ok: queued as {qid}")
        return await self._spool(enqueue, qid, s, sender, rcpts, data)

    async def _spool_later(self, *args: Any) -> None:
        # The fault: the 250 went out before the message was written; a crash in between
        # loses it (RFC 5321 6.1).
        await asyncio.sleep(_LATER_SECONDS)
        await self._spool(*args)

    async def _spool(
        self,
        enqueue: Callable[[], Awaitable[QueueEntry]],
        qid: str,
        s: Session,
        sender: str,
        rcpts: list[str],
        data: bytes,
    ) -> Reply:
        """Write the message to the spool, durably: then the 250 may go out."""
        try:
            entry = await enqueue()
        except SpoolError as e:
            event(log, "spool.error", level=logging.ERROR, qid=qid, error=str(e))
            return replies.SPOOL_FULL
        event(
            log,
            "queued",
            qid=qid,
            role=s.role,
            peer=s.peer,
            user=s.user,
            sender=sender or "<>",
            rcpts=len(rcpts),
            size=len(data),
            tls=s.tls,
        )
        if self.listener.on_queued:
            self.listener.on_queued(entry, data)
        if self.listener.usage is not None and s.user is not None:
            await asyncio.to_thread(self.listener.usage.sent, s.user, len(data))
        return replies.QUEUED.with_text(f"Ok: queued as {qid}")


# The fault smtp.ack-before-spool's tasks, and how long after the 250 each writes.
_LATER: set[asyncio.Task[None]] = set()
_LATER_SECONDS = 0.5


def _received(s: Session, qid: str, rcpts: list[str], by: str, now: float, *, utf8: bool) -> bytes:
    """RFC 5321 4.4: the trace header; "with" per RFC 3848 (ESMTP, ESMTPS, ESMTPSA…),
    UTF8SMTP… per RFC 6531 3.7.3 when the transaction was SMTPUTF8."""
    proto = ("UTF8SMTP" if utf8 else "ESMTP") + ("S" if s.tls else "") + ("A" if s.user else "")
    helo = s.helo or "unknown"
    date = email.utils.formatdate(now, localtime=False)
    for_part = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
    line = (
        f"Received: from {helo} ([{s.peer}])\r\n\tby {by} (mailspec) "
        f"with {proto} id {qid}{for_part};\r\n\t{date}\r\n"
    )
    return line.encode("utf-8", "surrogateescape")


def _has_bare_newline(content: bytes) -> bool:
    """Whether a CR or LF appears other than as a CRLF pair."""
    return content.count(b"\r") != content.count(b"\r\n") or content.count(b"\n") != content.count(
        b"\r\n"
    )
