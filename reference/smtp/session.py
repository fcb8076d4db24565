"""An SMTP session: the greeting, the command loop, and the commands of the session itself
(EHLO, HELO, STARTTLS, NOOP, RSET, QUIT, VRFY, EXPN, HELP, and a proxy's PROXY line).

The mail transaction is in ``transaction``, AUTH in ``auth``; what they share in ``core``.
The platform promises more than RFC 5321's minimum, so the loop is strict:

- a line ends only at CRLF: a command with a bare LF or bare CR is refused, as is a
  message (SMTP smuggling, CVE-2023-51764 family);
- no command argument carries a NUL or another control character (RFC 5321 4.1.2): each
  is refused before it can reach a Received: field, an envelope or the log;
- every reply but the greeting, EHLO/HELO and the 3yz intermediates carries an enhanced
  status code (RFC 2034), and the idle timeout runs on the injected clock.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference.directory import DirectoryUnavailable
from reference.log import event
from reference.mail import replies
from reference.smtp.auth import MECHANISMS, AuthCommands
from reference.smtp.commands import control_refusal, vrfy_address
from reference.smtp.core import log
from reference.smtp.proxy import MAX_PAYLOAD, V2_SIGNATURE, ProxyError, parse_v1, parse_v2
from reference.smtp.transaction import TransactionCommands
from reference.state import StateUnavailable
from reference.stream import Closed, Stream

if TYPE_CHECKING:
    from reference.smtp.server import Listener

__all__ = ["COMMAND_LIMIT", "ERROR_LIMIT", "PARAMETER_COMMAND_LIMIT", "VERBS", "SmtpSession"]

# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF. MAIL and RCPT
# grow with their extensions' parameters (RFC 1870 +26, RFC 6531 +10, RFC 3461 +100 on
# MAIL and +500 on RCPT, RFC 4954 +500 for AUTH=), so they get the text-line bound.
COMMAND_LIMIT = 512
PARAMETER_COMMAND_LIMIT = 1000
# Protocol errors (500-504, 555) tolerated in one session before it is closed with 421, as
# Postfix's smtpd_hard_error_limit does: a client this confused is not sending mail.
ERROR_LIMIT = 20
GREETING = "ESMTP mailspec"


class SmtpSession(AuthCommands, TransactionCommands):
    """One client, from the greeting to QUIT (or the timeout, or the client's going)."""

    def __init__(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(listener, reader, writer)
        self.commands = 0
        self.done = False
        # Connection slots taken: the socket's peer, and the client a PROXY line named.
        self.admitted: str | None = None
        self.client_slot: str | None = None

    async def run(self) -> None:
        """Serve the client until it quits or goes; the session's task."""
        self.listener.sessions.add(self)
        if self.metrics is not None:
            self.metrics.session_opened()
        watchdog = asyncio.create_task(self.watch_idle())
        try:
            await self.serve()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            # The client hung up: between commands, or in a line, DATA, a chunk or a reply.
            pass
        finally:
            watchdog.cancel()
            self.finish()

    def finish(self) -> None:
        """The session is over: its slots, its transaction and its connection go."""
        if self in self.listener.sessions:
            self.listener.sessions.discard(self)
            if self.metrics is not None:
                self.metrics.session_closed()
        self.envelope.close()
        if self.admitted is not None:
            self.listener.release(self.admitted)
            self.admitted = None
        if self.client_slot is not None:
            self.listener.release(self.client_slot, count_total=False)
            self.client_slot = None
        self.close()

    async def serve(self) -> None:
        if self.metrics is not None:
            self.metrics.connected()
        refused = self.listener.admit(self.peer_ip)
        if refused is not None:
            # RFC 5321 3.1: a server that cannot serve now answers 421 instead of 220.
            event(log, "connection.refused", peer=self.peer_ip, reason=refused.text)
            await self.send_line(
                f"{refused.code} {refused.enhanced} {self.hostname} {refused.text}"
            )
            return
        self.admitted = self.peer_ip
        await self.send_line(f"220 {self.hostname} {GREETING}")
        while not self.done:
            try:
                line = await self.read_command()
                if line is not None and not await self.proxy_line(line):
                    self.commands += 1
                    await self.dispatch(line)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                raise
            except DirectoryUnavailable as e:
                # PLATFORM smtp.directory-down: whatever command needed it, a 4xx.
                event(log, "smtp.directory_unavailable", peer=self.peer_ip, error=str(e))
                await self.reply(replies.DIRECTORY_UNAVAILABLE)
            except StateUnavailable as e:
                # Redis away: greylists, rate windows and lockouts cannot be counted, so the
                # command is tempfailed (never let through uncounted), without a traceback.
                event(log, "smtp.state_unavailable", peer=self.peer_ip, error=str(e))
                await self.reply(replies.STATE_UNAVAILABLE)
            except Exception:
                # The details go to the log; the client hears only that it may try again.
                log.exception("smtp.exception")
                await self.reply(replies.TEMP_LOCAL_ERROR)
            if self.errors >= ERROR_LIMIT and not self.done:
                await self.reply(replies.TOO_MANY_ERRORS)
                return

    async def read_command(self) -> bytes | None:
        """One command line without its CRLF, or None when it was answered already."""
        line = await self.read_line()
        if line is None:
            await self.reply(replies.LINE_TOO_LONG)
            return None
        # RFC 5321 2.3.8: lines end with CRLF. A bare LF (or CR) is where SMTP smuggling
        # starts, so such a line is refused rather than guessed at.
        if not line.endswith(b"\r\n"):
            await self.reply(replies.BARE_LF_COMMAND)
            return None
        line = line[:-2]
        if b"\r" in line:
            await self.reply(replies.BARE_CR_COMMAND)
            return None
        return line

    async def dispatch(self, line: bytes) -> None:
        if not line:
            await self.reply(replies.EMPTY_COMMAND)
            return
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            await self.reply(replies.EMPTY_COMMAND)
            return
        # Only spaces are stripped: a control character at either end (HT, VT, FF are
        # white space to bytes.strip) must be seen, and refused, like one inside.
        arg_bytes = arg_bytes.strip(b" ")
        # UTF-8 arguments are allowed (RFC 6531); surrogateescape keeps any other octets
        # recoverable.
        arg = arg_bytes.decode("utf-8", "surrogateescape") if arg_bytes else None
        limit = (
            PARAMETER_COMMAND_LIMIT if verb in ("MAIL", "RCPT") and self.extended else COMMAND_LIMIT
        )
        if len(line) + 2 > limit:
            await self.reply(replies.LINE_TOO_LONG)
            return
        command = VERBS.get(verb)
        if command is None:
            event(log, "unknown.command", peer=self.peer_ip, verb=verb[:20])
            await self.reply(replies.UNKNOWN_COMMAND)
            return
        self.touch()
        # RFC 5321 4.1.2: no argument of any command takes a control character. Refused
        # here, once for every verb, before the octet can reach a Received: field, the
        # envelope or the spool.
        refusal = control_refusal(verb, arg)
        if refusal is not None:
            # What was sent, escaped by the log formatter; never an AUTH line (credentials).
            shown = None if verb == "AUTH" or arg is None else arg[:200]
            event(log, "command.refused", peer=self.peer_ip, verb=verb, arg=shown)
            await self.reply(refusal)
            return
        await command.run(self, arg)

    # -- EHLO, HELO, STARTTLS ---------------------------------------------------------------

    async def ehlo(self, hostname: str | None) -> None:
        if not await self._greeted(hostname, extended=True):
            return
        lines = [
            self.hostname,
            "PIPELINING",  # RFC 2920
            f"SIZE {self.listener.max_message_size}",  # RFC 1870
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "DSN",  # RFC 3461
            "CHUNKING",  # RFC 3030
        ]
        if self.listener.starttls_context is not None and not self.tls:
            lines.append("STARTTLS")  # RFC 3207 4.2: never again once TLS is up
        if self.tls:
            lines.append("AUTH " + " ".join(MECHANISMS))  # RFC 4954: over TLS only
        await self.send_line("".join(f"250-{text}\r\n" for text in lines) + "250 HELP")

    async def helo_command(self, hostname: str | None) -> None:
        if await self._greeted(hostname, extended=False):
            await self.send_line(f"250 {self.hostname}")

    async def _greeted(self, hostname: str | None, *, extended: bool) -> bool:
        """Take the client's name from EHLO or HELO; False when it gave none (answered)."""
        if not hostname:
            await self.reply(replies.SYNTAX_EHLO if extended else replies.SYNTAX_HELO)
            return False
        # RFC 5321 4.1.4: EHLO and HELO reset the transaction, as RSET does.
        self.new_transaction()
        self.extended = extended
        self.helo = hostname
        return True

    async def starttls(self, arg: str | None) -> None:
        if arg:
            await self.reply(replies.SYNTAX_STARTTLS)
            return
        if self.tls:
            await self.reply(replies.TLS_ALREADY_ACTIVE)
            return
        context = self.listener.starttls_context
        if context is None:
            await self.reply(replies.TLS_UNAVAILABLE)
            return
        # RFC 3207 4.2, CVE-2011-0411: whatever the client sent behind STARTTLS came in
        # plaintext and must never run as if it came through TLS: Stream.start_tls drops it.
        go_ahead = f"{replies.TLS_READY}\r\n".encode()
        stream = Stream(self.reader, self.writer, self.clock)
        try:
            await stream.start_tls(context, float(self.listener.timeout), go_ahead)
        except (Closed, TimeoutError):
            self.done = True
            self.close()
            return
        # RFC 3207 4.2: the session starts again, knowing nothing the client said before.
        self.tls = True
        self.helo, self.extended, self.user = None, False, None
        self.new_transaction()
        self.touch()

    # -- the commands that change nothing, or only the transaction ------------------------

    async def noop(self, arg: str | None) -> None:
        await self.reply(replies.OK)

    async def rset(self, arg: str | None) -> None:
        if arg:
            await self.reply(replies.SYNTAX_RSET)
            return
        self.new_transaction()
        await self.reply(replies.OK)

    async def quit(self, arg: str | None) -> None:
        if arg:
            await self.reply(replies.SYNTAX_QUIT)
            return
        await self.reply(replies.BYE)
        self.done = True
        self.close()

    async def vrfy(self, arg: str | None) -> None:
        if not await self.authenticated_if_required():
            return
        if not arg:
            await self.reply(replies.SYNTAX_VRFY)
        elif vrfy_address(arg) is None:
            await self.reply(replies.VRFY_UNPARSABLE.format(arg=arg))
        else:
            # RFC 5321 3.5.3: 252, so no directory can be harvested through VRFY.
            await self.reply(replies.CANNOT_VRFY)

    async def expn(self, arg: str | None) -> None:
        await self.reply(replies.EXPN_NOT_IMPLEMENTED)

    async def help(self, arg: str | None) -> None:
        if not await self.authenticated_if_required():
            return
        offered = sorted(v for v, c in VERBS.items() if self._listed(c))
        if not arg:
            await self.reply(replies.HELP.format(commands=" ".join(offered)))
            return
        command = VERBS.get(arg.upper())
        if command is None or not self._listed(command) or command.syntax is None:
            await self.reply(replies.HELP_UNKNOWN.format(commands=" ".join(offered)))
            return
        syntax = command.syntax + (command.extended if self.extended else "")
        await self.reply(replies.HELP_SYNTAX.format(syntax=syntax))

    def _listed(self, command: Verb) -> bool:
        if command.syntax is None:
            return False
        return not command.starttls or self.listener.starttls_context is not None

    # -- PROXY, from a trusted network ----------------------------------------------------

    async def proxy_line(self, line: bytes) -> bool:
        """A PROXY v1 line (or v2 header) first thing from a trusted network: take the
        client it names. True when the line was the proxy's.

        The greeting has gone out already (it does not depend on the client), so a plain
        client never waits; the proxy's line is read as the first "command", unanswered.
        """
        if self.commands or not self.listener.proxy_from:
            return False
        real = self.peer_ip
        if not self.listener.is_proxy(real):
            return False  # an ordinary command (PROXY from elsewhere: an unknown one)
        if line == b"":
            return await self._proxy_v2(real)
        if not line.startswith(b"PROXY "):
            return False
        self.commands += 1
        try:
            client = parse_v1(line)
        except ProxyError:
            await self._bad_proxy_header()
            return True
        if client is None:
            return True  # PROXY UNKNOWN: the connection's own address stays
        await self._take_client(real, *client)
        return True

    async def _proxy_v2(self, real: str) -> bool:
        """PROXY v2: its signature began with CRLF, read as an empty first line."""
        self.commands += 1
        try:
            rest = await asyncio.wait_for(self.reader.readexactly(10), 5)
            if rest != V2_SIGNATURE[2:]:
                raise ProxyError("not a PROXY v2 signature")
            head = await asyncio.wait_for(self.reader.readexactly(4), 5)
            length = int.from_bytes(head[2:4], "big")
            if length > MAX_PAYLOAD:
                raise ProxyError("header too long")
            client = parse_v2(head, await asyncio.wait_for(self.reader.readexactly(length), 5))
        except (ProxyError, ValueError, TimeoutError, asyncio.IncompleteReadError) as e:
            event(log, "proxy.malformed", via=real, error=str(e))
            await self._bad_proxy_header()
            return True
        if client is not None:  # None: LOCAL, the proxy speaks for itself
            await self._take_client(real, *client)
        return True

    async def _bad_proxy_header(self) -> None:
        await self.reply(replies.BAD_PROXY_HEADER)
        self.done = True
        self.close()

    async def _take_client(self, via: str, client: str, port: int) -> None:
        """From now on the session is the client's that the proxy named."""
        self.peer = (client, port)
        event(log, "proxy", via=via, client=client)
        refused = self.listener.admit(client, count_total=False)
        if refused is not None:
            event(log, "connection.refused", peer=client, via=via, reason=refused.text)
            await self.reply(refused)
            self.done = True
            self.close()
            return
        self.client_slot = client


@dataclass(frozen=True)
class Verb:
    """A command the session knows: what runs it, and what HELP says of it."""

    run: Callable[[SmtpSession, str | None], Awaitable[None]]
    syntax: str | None = None  # None: not listed by HELP
    extended: str = ""  # what HELP adds after EHLO
    starttls: bool = False  # listed only where STARTTLS is offered


VERBS: dict[str, Verb] = {
    "EHLO": Verb(SmtpSession.ehlo, "EHLO hostname"),
    "HELO": Verb(SmtpSession.helo_command, "HELO hostname"),
    "STARTTLS": Verb(SmtpSession.starttls, "STARTTLS", starttls=True),
    "AUTH": Verb(SmtpSession.auth),
    "MAIL": Verb(SmtpSession.mail, "MAIL FROM: <address>", " [SP <mail-parameters>]"),
    "RCPT": Verb(SmtpSession.rcpt, "RCPT TO: <address>", " [SP <mail-parameters>]"),
    "DATA": Verb(SmtpSession.data, "DATA"),
    "BDAT": Verb(SmtpSession.bdat, "BDAT chunk-size [LAST]"),
    "RSET": Verb(SmtpSession.rset, "RSET"),
    "NOOP": Verb(SmtpSession.noop, "NOOP [ignored]"),
    "QUIT": Verb(SmtpSession.quit, "QUIT"),
    "VRFY": Verb(SmtpSession.vrfy, "VRFY <address>"),
    "EXPN": Verb(SmtpSession.expn),
    "HELP": Verb(SmtpSession.help, "HELP [command]"),
}
