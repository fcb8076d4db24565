"""STARTTLS, LOGIN and AUTHENTICATE (PLAIN and LOGIN, with SASL-IR): leaving the
not-authenticated state."""

from __future__ import annotations

import asyncio
import base64
import binascii

from reference.credentials import TemporarilyUnavailable, parse_sasl_plain
from reference.imap.core import Hangup, SessionCore, State
from reference.imap.parser import Authenticate, Login, Simple

MAX_AUTH_FAILURES = 3


class _Cancelled(Exception):
    """The client answered a SASL challenge with ``*``."""


class AuthCommands(SessionCore):
    async def starttls(self, command: Simple) -> None:
        context = self.server.tls_context
        if self.tls or context is None:
            await self.bad(command.tag, "STARTTLS not available")
            return
        await self.flush()
        # RFC 9051 6.2.1: discard whatever was pipelined behind STARTTLS (command injection).
        reply = f"{command.tag} OK Begin TLS negotiation now\r\n".encode()
        discarded = await self.stream.start_tls(context, self.server.login_timeout, reply)
        self.tls = True
        self.log("imap.starttls", discarded=discarded)

    async def login(self, command: Login) -> None:
        if not self.plaintext_ok():
            await self.refuse_plaintext(command.tag, "LOGIN")
            return
        try:
            user = await self.server.auth.authenticate(
                command.username, command.password, client=self.stream.client
            )
        except TemporarilyUnavailable as e:
            await self.unavailable(command.tag, command.username, "LOGIN", str(e))
            return
        await self.logged_in(command.tag, command.username, user, "LOGIN")

    async def authenticate(self, command: Authenticate) -> None:
        if command.mechanism not in ("PLAIN", "LOGIN"):
            await self.no(command.tag, "Unsupported authentication mechanism")  # RFC 9051 6.2.2
            return
        if not self.plaintext_ok():
            await self.refuse_plaintext(command.tag, "AUTHENTICATE")
            return
        try:
            if command.mechanism == "PLAIN":
                answer = command.initial  # RFC 4959 SASL-IR
                if answer is None:
                    answer = await self.challenge(b"")
                raw = b"" if answer == "=" else base64.b64decode(answer, validate=True)
                authzid, authcid, password = parse_sasl_plain(raw)
            else:  # LOGIN (draft-murchison-sasl-login): user name, then password
                first = command.initial or await self.challenge(b"Username:")
                authcid = base64.b64decode(first, validate=True).decode("utf-8")
                second = await self.challenge(b"Password:")
                authzid, password = "", base64.b64decode(second, validate=True).decode("utf-8")
                if not authcid or not password:
                    raise ValueError("empty LOGIN credentials")
        except _Cancelled:
            await self.bad(command.tag, "Authentication cancelled")  # RFC 9051 6.2.2
            return
        except (ValueError, binascii.Error):
            await self.bad(command.tag, f"Invalid {command.mechanism} response")
            return
        try:
            user = await self.server.auth.authenticate(authcid, password, client=self.stream.client)
        except TemporarilyUnavailable as e:
            await self.unavailable(command.tag, authcid, command.mechanism, str(e))
            return
        if user is not None and authzid and authzid.lower() not in (authcid.lower(), user):
            self.log("imap.login", method="PLAIN", user=authcid, result="authzid-refused")
            await self.no(command.tag, "[AUTHORIZATIONFAILED] Not authorized as that identity")
            return
        await self.logged_in(command.tag, authcid, user, command.mechanism)

    async def challenge(self, prompt: bytes) -> str:
        await self.send(b"+ " + base64.b64encode(prompt))
        line = await self.stream.readline(self.server.max_line, self.timeout())
        answer = line.rstrip(b"\r\n").decode("ascii", "replace")
        if answer == "*":
            raise _Cancelled
        return answer

    async def unavailable(self, tag: str, username: str, method: str, why: str) -> None:
        self.auth_failures += 1
        self.log("imap.login", method=method, user=username, result="unavailable", why=why)
        # RFC 5530 UNAVAILABLE: temporary; the client should not ask for another password.
        await self.no(tag, "[UNAVAILABLE] Login temporarily unavailable, try again later")

    async def refuse_plaintext(self, tag: str, method: str) -> None:
        self.log("imap.login", method=method, result="refused-no-tls")
        # RFC 5530 PRIVACYREQUIRED: the client can try STARTTLS and then log in.
        await self.no(tag, "[PRIVACYREQUIRED] Plaintext authentication requires TLS (STARTTLS)")

    async def logged_in(self, tag: str, username: str, user: str | None, method: str) -> None:
        if user is None:
            self.auth_failures += 1
            self.log("imap.login", method=method, user=username, result="fail")
            await self.no(tag, "[AUTHENTICATIONFAILED] Authentication failed")  # RFC 5530
            if self.auth_failures >= MAX_AUTH_FAILURES:
                await self.last_words(b"* BYE Too many authentication failures")
                raise Hangup
            return
        # The account, its INBOX and special-use folders exist from the first login on.
        await asyncio.to_thread(self.store.folders, user)
        self.user = user
        self.state = State.AUTHENTICATED
        self.log("imap.login", method=method, user=user, result="ok")
        await self.send(b"%s OK [CAPABILITY %s] Logged in" % (tag.encode(), self.capabilities()))
