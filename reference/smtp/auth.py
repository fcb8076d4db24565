"""AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms: the challenges, the
password look-up, and the slowdown and lockout of repeated failures."""

from __future__ import annotations

from base64 import b64decode, b64encode

from reference import faults
from reference.credentials import TemporarilyUnavailable
from reference.log import event
from reference.mail import replies
from reference.mail.replies import Reply
from reference.smtp.commands import has_control
from reference.smtp.core import SessionCore, log

__all__ = ["MECHANISMS", "AuthCommands"]

# Offered in this order in the EHLO line, once TLS is up.
MECHANISMS = ("LOGIN", "PLAIN")
# The LOGIN mechanism's challenges, as aiosmtpd and most servers word them.
_USERNAME_CHALLENGE = b"User Name\x00"
_PASSWORD_CHALLENGE = b"Password\x00"


class AuthCommands(SessionCore):
    async def auth(self, arg: str | None) -> None:
        """RFC 4954 4. The session keeps the account's address in ``user``."""
        # RFC 4954 4: "The AUTH command is not permitted during a mail transaction."
        if self.envelope.mail is not None:
            await self.reply(replies.AUTH_IN_TRANSACTION)
            return
        if not self.helo:
            await self.reply(replies.SEND_EHLO_FIRST)
            return
        if not self.extended:
            await self.reply(replies.AUTH_UNKNOWN)
            return
        if not self.tls:
            await self.reply(replies.AUTH_NEEDS_TLS)
            return
        if self.user is not None:
            await self.reply(replies.AUTH_ALREADY)
            return
        args = (arg or "").split()
        if not args:
            await self.reply(replies.AUTH_NO_MECHANISM)
            return
        if len(args) > 2:
            await self.reply(replies.AUTH_TOO_MANY_VALUES)
            return
        mechanism = args[0]
        if mechanism not in MECHANISMS:
            await self.reply(replies.AUTH_UNKNOWN_MECHANISM)
            return
        initial = args[1] if len(args) == 2 else None
        outcome = await (self._plain(initial) if mechanism == "PLAIN" else self._login(initial))
        if isinstance(outcome, Reply):
            await self.reply(outcome)
            return
        self.user = outcome
        await self.reply(replies.AUTH_OK)

    async def _plain(self, initial: str | None) -> str | Reply:
        """The account PLAIN proves, or the reply that refuses it."""
        raw = await self._response(initial, b"")
        if not isinstance(raw, bytes):
            return raw
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return replies.AUTH_BAD_PLAIN
        return await self._check("PLAIN", parts[1], parts[2], parts[0])

    async def _login(self, initial: str | None) -> str | Reply:
        login = await self._response(initial, _USERNAME_CHALLENGE)
        if not isinstance(login, bytes):
            return login
        password = await self._response(None, _PASSWORD_CHALLENGE)
        if not isinstance(password, bytes):
            return password
        return await self._check("LOGIN", login, password)

    async def _response(self, initial: str | None, challenge: bytes) -> bytes | Reply:
        """The client's answer, decoded: from the command line, or to a 334 challenge."""
        if initial is not None:
            try:
                return b64decode(initial.encode(), validate=True)
            except ValueError:  # not base64, or not even ASCII
                return replies.AUTH_BAD_BASE64
        # RFC 4954 4: the space after 334 is there even when the challenge is empty.
        await self.send_line("334 " + b64encode(challenge).decode())
        line = await self.read_line()
        if line is None:
            return replies.LINE_TOO_LONG
        blob = line.strip()
        if blob == b"*":
            return replies.AUTH_ABORTED  # RFC 4954 4: the client cancels the exchange
        try:
            return b64decode(blob, validate=True)
        except ValueError:
            if faults.active("smtp.auth-bad-base64-535"):
                return replies.AUTH_FAILED
            return replies.AUTH_BAD_BASE64

    async def _check(
        self, mechanism: str, login: bytes, password: bytes, authzid: bytes = b""
    ) -> str | Reply:
        try:
            user = login.decode("utf-8")
            secret = password.decode("utf-8")
            claimed = authzid.decode("utf-8")
        except UnicodeDecodeError:
            return replies.AUTH_FAILED
        peer = self.peer_ip
        if has_control(user) or has_control(claimed):
            # RFC 4616 2, RFC 4013 2.3: no identity holds a control character; no account
            # can match one, and it must not reach the log raw or count as a failed login.
            event(log, "auth.refused", mechanism=mechanism, user=user, peer=peer)
            return replies.CONTROL_IN_IDENTITY
        limiter = self.listener.auth_limiter
        if limiter is not None:
            locked = await limiter.locked(user, peer)
            if locked is not None:
                # Locked: the password is not even looked at (RFC 4954 6: 454 4.7.0).
                event(log, "auth", mechanism=mechanism, user=user, peer=peer, locked=locked.scope)
                return replies.AUTH_LOCKED
        try:
            address = await self.listener.auth.authenticate(user, secret)
        except TemporarilyUnavailable as e:
            # The directory is down: not a wrong password (RFC 4954 6: 454 4.7.0).
            event(log, "auth.unavailable", mechanism=mechanism, user=user, peer=peer, error=e)
            return replies.AUTH_UNAVAILABLE
        event(log, "auth", mechanism=mechanism, user=user, peer=peer, ok=address is not None)
        if address is None:
            if limiter is not None:
                delay = await limiter.failed(user, peer)
                if delay > 0:
                    await self.clock.sleep(delay)  # the slowdown, on the injected clock
            return replies.AUTH_FAILED
        return address
