"""An IMAP session: the command loop, state checks, dispatch to the command families, and
the commands of any state (CAPABILITY, NOOP, CHECK, LOGOUT, ID, ENABLE)."""

from __future__ import annotations

from dataclasses import replace

from reference.imap import response as r
from reference.imap.append import AppendCommand
from reference.imap.auth import AuthCommands
from reference.imap.core import Hangup, No, SessionCore, State, log
from reference.imap.fetch import FetchCommand
from reference.imap.idle import IdleCommand
from reference.imap.listing import ListCommands
from reference.imap.mailboxes import MailboxCommands
from reference.imap.messages import MessageCommands
from reference.imap.notify import NotifyCommand
from reference.imap.parser import (
    Append,
    Authenticate,
    CancelUpdate,
    Command,
    Compress,
    Copy,
    Enable,
    Expunge,
    Fetch,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    Notify,
    ParseError,
    Rename,
    Search,
    Select,
    SetQuota,
    Simple,
    Sort,
    Status,
    Store,
    Thread,
    literal_suffix,
    parse_command,
    tag_of,
)
from reference.imap.quota import QuotaCommands
from reference.imap.search import SearchCommand
from reference.imap.selection import SelectionCommands
from reference.imap.sort import SortCommands
from reference.stream import Closed, LineTooLong

_ANY = frozenset(State) - {State.LOGOUT}
_AUTHED = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})
_NOT_AUTHED = frozenset({State.NOT_AUTHENTICATED})
_AUTHED_COMMANDS = (
    *("SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST"),
    *("LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA"),
    "COMPRESS",  # RFC 4978 3: once logged in
    "NOTIFY",  # RFC 5465 3
)
# What an archive account's user may not do: anything that changes its mail or folders.
ARCHIVE_WRITES = frozenset(
    {"STORE", "EXPUNGE", "APPEND", "DELETE", "CREATE", "RENAME", "COPY", "MOVE", "SETQUOTA"}
)

_ALLOWED: dict[str, frozenset[State]] = {  # RFC 9051 3 / RFC 3501 3: states and commands
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,  # RFC 2971 3.1
    "STARTTLS": _NOT_AUTHED,
    "LOGIN": _NOT_AUTHED,
    "AUTHENTICATE": _NOT_AUTHED,
    "ENABLE": frozenset({State.AUTHENTICATED}),  # RFC 5161 3.1
    **dict.fromkeys(_AUTHED_COMMANDS, _AUTHED),
    **dict.fromkeys(
        [
            *("CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY"),
            *("MOVE", "SORT", "THREAD", "CANCELUPDATE"),
        ],
        _SELECTED,
    ),
}


class Session(
    AuthCommands,
    SelectionCommands,
    MailboxCommands,
    ListCommands,
    QuotaCommands,
    AppendCommand,
    IdleCommand,
    FetchCommand,
    SortCommands,
    SearchCommand,
    MessageCommands,
    NotifyCommand,
    SessionCore,
):
    """One connection, from the greeting to the BYE."""

    async def run(self) -> None:
        started = self.server.clock.monotonic()
        self.log("imap.connect", tls=self.tls)
        reason = "logout"
        try:
            await self.send(
                b"* OK [CAPABILITY %s] %s IMAP4rev2 ready"
                % (self.capabilities(), self.server.hostname.encode("ascii", "replace"))
            )
            while self.state is not State.LOGOUT:
                await self.step()
        except TimeoutError:
            reason = "timeout"
            await self.last_words(b"* BYE Autologout; idle for too long")  # RFC 9051 5.4
        except LineTooLong:
            reason = "line-too-long"
            await self.last_words(b"* BAD [TOOBIG] Line too long\r\n* BYE Line too long")
        except Hangup:
            reason = "hangup"
        except Closed:
            reason = "closed"
        except Exception:
            reason = "error"
            log.exception("imap.error session=%s", self.id)
        finally:
            self.deselect()
            await self.stream.close()
            elapsed = round(self.server.clock.monotonic() - started, 3)
            self.log("imap.disconnect", reason=reason, user=self.user or "-", seconds=elapsed)

    async def step(self) -> None:
        data = await self.read_command()
        if data is None:
            return
        command = parse_command(data, max_literal=self.literal_limit())
        if isinstance(command, ParseError):
            await self.bad(command.tag, command.reason)
            return
        name = _name(command)
        log.debug("imap.command session=%s tag=%s command=%s", self.id, command.tag, name)
        if self.state not in _ALLOWED[name]:
            await self.bad(command.tag, f"{name} not allowed in {self.state.value} state")
            return
        self.errors = 0
        if self.read_only():
            if name in ARCHIVE_WRITES:
                # An archive account keeps what was sent and received as it was: its user
                # reads it, nobody changes it (RFC 5530 NOPERM: the right is missing).
                await self.no(
                    command.tag, f"[NOPERM] {name} refused: {self.user} is a read-only archive"
                )
                return
            if isinstance(command, Select):
                command = replace(command, readonly=True)  # SELECT opens it as EXAMINE would
        try:
            await self.dispatch(command)
        except (Closed, Hangup, TimeoutError, LineTooLong):
            raise
        except No as e:
            self.discard()
            await self.no(command.tag, str(e))
        except Exception:
            log.exception("imap.error session=%s command=%s", self.id, name)
            self.discard()
            await self.send(b"%s NO [SERVERBUG] Internal error" % command.tag.encode())

    async def read_command(self) -> bytes | None:
        """One command with its literals (RFC 9051 7.5 continuation for synchronizing ones);
        None when a literal was refused with BAD."""
        timeout = self.timeout()
        line = await self.stream.readline(self.server.max_line, timeout)
        parts = [line]
        total = len(line)
        while (found := literal_suffix(line)) is not None:
            size, nonsync = found
            if size > self.literal_limit() or total + size > self.literal_limit() + 65536:
                tag = (tag_of(b"".join(parts)) or "*").encode()
                if nonsync:  # RFC 7888 4: the octets are already coming; no way to resync
                    await self.send(b"%s BAD [TOOBIG] Literal too large" % tag)
                    await self.last_words(b"* BYE Literal too large")
                    raise Hangup
                await self.send(b"%s BAD [TOOBIG] Literal too large" % tag)  # RFC 9051 7.1
                return None
            if not nonsync:
                await self.send(b"+ Ready for literal data")
            parts.append(await self.stream.readexactly(size, timeout))
            line = await self.stream.readline(self.server.max_line, timeout)
            parts.append(line)
            total += size + len(line)
        return b"".join(parts)

    async def dispatch(self, command: Command) -> None:
        match command:
            case Simple(name="CAPABILITY"):
                await self.send(b"* CAPABILITY " + self.capabilities())
                await self.ok(command, "CAPABILITY completed")
            case Simple(name="NOOP" | "CHECK"):
                if self.view is not None:
                    await self.refresh()
                await self.ok(command, f"{command.name} completed")
            case Simple(name="LOGOUT"):
                await self.send(b"* BYE Logging out")  # RFC 9051 6.1.3
                await self.ok(command, "LOGOUT completed")
                self.state = State.LOGOUT
            case Simple(name="STARTTLS"):
                await self.starttls(command)
            case Simple(name="CLOSE"):
                await self.close(command)
            case Simple(name="UNSELECT"):
                await self.unselect(command)
            case Simple(name="NAMESPACE"):
                await self.namespace(command)
            case Simple(name="IDLE"):
                await self.idle(command)
            case Login():
                await self.login(command)
            case Authenticate():
                await self.authenticate(command)
            case Enable():
                await self.enable(command)
            case Id():
                await self.send(b"* ID " + r.render(["name", "mailspec", "vendor", "mailspec"]))
                await self.ok(command, "ID completed")
            case Select():
                await self.select(command)
            case MailboxCommand(name="GETQUOTA"):
                await self.getquota(command)
            case MailboxCommand(name="GETQUOTAROOT"):
                await self.getquotaroot(command)
            case MailboxCommand(name="CREATE"):
                await self.create(command)
            case MailboxCommand(name="DELETE"):
                await self.delete(command)
            case MailboxCommand(name="SUBSCRIBE" | "UNSUBSCRIBE"):
                await self.subscribe(command)
            case Rename():
                await self.rename(command)
            case SetQuota():
                await self.setquota(command)
            case ListMailboxes():
                await self.list_mailboxes(command)
            case Status():
                await self.status(command)
            case Append():
                await self.append(command)
            case Fetch():
                await self.fetch(command)
            case Store():
                await self.store_flags(command)
            case Copy():
                await self.copy(command)
            case Expunge():
                await self.expunge(command)
            case Search():
                await self.search(command)
            case Sort():
                await self.sort(command)
            case Thread():
                await self.thread(command)
            case CancelUpdate():
                await self.cancel_update(command)
            case Compress():
                await self.compress(command)
            case Notify():
                await self.notify(command)
            case _:  # pragma: no cover - every parsed command has a case
                await self.bad(command.tag, "Command not implemented")

    async def compress(self, command: Compress) -> None:
        """RFC 4978 3: the OK goes out plain; everything after it, both ways, deflated."""
        if self.stream.compressed:
            raise No("[COMPRESSIONACTIVE] DEFLATE active already")
        if command.mechanism != "DEFLATE":
            await self.bad(command.tag, "Unknown compression mechanism")
            return
        await self.ok(command, "DEFLATE active")
        self.stream.start_deflate()
        self.log("imap.compress", mechanism="DEFLATE")

    async def enable(self, command: Enable) -> None:
        enabled: list[str] = []
        for cap in command.capabilities:  # RFC 5161 3.1: unknown ones are ignored
            if cap == "IMAP4REV2" and not self.rev2:
                self.rev2 = self.utf8 = True
                enabled.append("IMAP4rev2")
            elif cap == "UTF8=ACCEPT" and not self.utf8:
                self.utf8 = True
                enabled.append("UTF8=ACCEPT")
            elif cap == "CONDSTORE" and not self.condstore:
                self.condstore = True
                enabled.append("CONDSTORE")
            elif cap == "QRESYNC" and not self.qresync:
                self.qresync = self.condstore = True  # RFC 7162 3.2.3: QRESYNC implies it
                enabled.append("QRESYNC")
        await self.send(" ".join(["* ENABLED", *enabled]).encode())
        await self.ok(command, "ENABLE completed")


def _name(command: Command) -> str:
    match command:
        case Simple():
            return command.name
        case Select():
            return "EXAMINE" if command.readonly else "SELECT"
        case MailboxCommand():
            return command.name
        case ListMailboxes():
            return "LSUB" if command.lsub else "LIST"
        case Copy():
            return "MOVE" if command.move else "COPY"
        case _:
            return type(command).__name__.upper()
