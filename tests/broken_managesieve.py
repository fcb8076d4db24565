"""A small ManageSieve server (RFC 5804) broken on purpose, for the suite to catch.

It keeps scripts in a :class:`ScriptStore` and speaks just enough of the protocol for the
suite's ManageSieve requirements; each flaw is one a real server had (or ours, once):

- ``auth-before-tls``: AUTHENTICATE PLAIN is taken on the plaintext connection;
- ``lf-scripts``: scripts come back with LF line ends (a text-mode read of the file, as the
  reference did until GETSCRIPT was checked);
- ``delete-active``: DELETESCRIPT removes the active script.

With ``flaw=None`` it is the control: the same requirements pass.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from pathlib import Path

from reference.managesieve.parser import ParseError, literal_size, parse_command, quoted
from reference.sieve import ScriptError, ScriptStore, SieveError
from reference.tls import self_signed

__all__ = ["ACCOUNTS", "FLAWS", "BrokenManageSieve"]

HOSTNAME = "sieve.example.test"
ACCOUNTS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}
FLAWS = ("auth-before-tls", "lf-scripts", "delete-active")


class BrokenManageSieve:
    def __init__(self, flaw: str | None, workdir: Path) -> None:
        if flaw is not None and flaw not in FLAWS:
            raise ValueError(f"unknown flaw {flaw!r}")
        workdir.mkdir(parents=True, exist_ok=True)
        self.flaw = flaw
        self.scripts = ScriptStore(workdir / "scripts")
        self.cafile = workdir / "cert.pem"
        key = workdir / "key.pem"
        self_signed(HOSTNAME, self.cafile, key)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(self.cafile, key)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def start(self) -> BrokenManageSieve:
        self._thread.start()

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._session, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def target_toml(self) -> str:
        alice, bob = ACCOUNTS.items()
        return f"""
name = "broken-managesieve-{self.flaw or "control"}"
domain = "example.test"
hostname = "{HOSTNAME}"
timeout = 3
features = ["sieve"]

[endpoints]
managesieve = "sieve://127.0.0.1:{self.port}"

[accounts.primary]
address = "{alice[0]}"
password = "{alice[1]}"
[accounts.secondary]
address = "{bob[0]}"
password = "{bob[1]}"

[tls]
cafile = "{self.cafile}"
server_name = "{HOSTNAME}"
"""

    def _caps(self, tls: bool) -> bytes:
        sasl = b'"SASL" "PLAIN"' if tls or self.flaw == "auth-before-tls" else b'"SASL" ""'
        lines = [b'"IMPLEMENTATION" "broken"', sasl, b'"SIEVE" "fileinto"', b'"VERSION" "1.0"']
        if not tls:
            lines.append(b'"STARTTLS"')
        return b"\r\n".join(lines) + b"\r\nOK\r\n"

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls, user = False, None
        writer.write(self._caps(tls))
        try:
            while True:
                data = line = await reader.readline()
                if not line:
                    return
                while (n := literal_size(line)) is not None:
                    data += await reader.readexactly(n)
                    line = await reader.readline()
                    data += line
                command = parse_command(data)
                if isinstance(command, ParseError):
                    writer.write(b'NO "syntax"\r\n')
                    continue
                verb, args = command.verb, command.args
                if verb == "STARTTLS":
                    writer.write(b"OK\r\n")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    tls = True
                    writer.write(self._caps(tls))
                elif verb == "AUTHENTICATE":
                    if not tls and self.flaw != "auth-before-tls":
                        writer.write(b'NO (ENCRYPT-NEEDED) "TLS first"\r\n')
                        continue
                    _, name, password = base64.b64decode(args[1]).decode().split("\0")
                    ok = ACCOUNTS.get(name) == password
                    user = name if ok else None
                    writer.write(b"OK\r\n" if ok else b'NO "failed"\r\n')
                elif verb == "LOGOUT":
                    writer.write(b"OK\r\n")
                    return
                elif user is None:
                    writer.write(b'NO "log in first"\r\n')
                else:
                    writer.write(self._command(user, verb, args))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            writer.close()

    def _command(self, user: str, verb: str, args: tuple[str, ...]) -> bytes:
        store = self.scripts
        try:
            if verb == "PUTSCRIPT":
                store.put(user, args[0], args[1])
            elif verb == "CHECKSCRIPT":
                store.check(args[0])
            elif verb == "SETACTIVE":
                store.activate(user, args[0])
            elif verb == "LISTSCRIPTS":
                listing = store.listing(user)
                return (
                    b"".join(quoted(n) + (b" ACTIVE" if a else b"") + b"\r\n" for n, a in listing)
                    + b"OK\r\n"
                )
            elif verb == "GETSCRIPT":
                text = store.get(user, args[0])
                if text is None:
                    return b'NO (NONEXISTENT) "no such script"\r\n'
                if self.flaw == "lf-scripts":
                    text = text.replace("\r\n", "\n")
                raw = text.encode()
                return b"{%d}\r\n" % len(raw) + raw + b"\r\nOK\r\n"
            elif verb == "DELETESCRIPT":
                if self.flaw == "delete-active" and store.active_name(user) == args[0]:
                    store.activate(user, "")
                store.delete(user, args[0])
            elif verb == "RENAMESCRIPT":
                store.rename(user, args[0], args[1])
            elif verb == "HAVESPACE":
                store.has_space(user, args[0], int(args[1]))
            elif verb == "NOOP":
                return b"OK (TAG " + quoted(args[0]) + b")\r\n" if args else b"OK\r\n"
            else:
                return b'NO "unknown command"\r\n'
        except ScriptError as e:
            return b"NO (" + e.code.encode() + b') "refused"\r\n' if e.code else b'NO "no"\r\n'
        except SieveError:
            return b'NO "script error"\r\n'
        return b"OK\r\n"
