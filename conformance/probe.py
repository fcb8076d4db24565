"""Before a run against a described target: is every endpoint there and greeting?"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import ssl
from collections.abc import Mapping

from conformance.target import Endpoint, Target

__all__ = ["CONNECT_TIMEOUT", "probe", "probe_endpoint"]

# A listener on the network answers a connect within milliseconds; a host that is down or
# filtered never does. Waiting the target's whole reply timeout for that would only delay
# the one line that says so.
CONNECT_TIMEOUT = 3.0
# What the first line of each protocol's greeting starts with when the server offers service.
_GREETING: Mapping[str, re.Pattern[bytes]] = {
    "smtp": re.compile(rb"^220(?:[ -]|\r?\n)"),
    "imap": re.compile(rb"^\* (OK|PREAUTH)\b", re.IGNORECASE),
    "pop3": re.compile(rb"^\+OK\b"),
    # RFC 5804 1.7: the capabilities (quoted strings) first, then OK.
    "managesieve": re.compile(rb'^("|OK\b)', re.IGNORECASE),
}
# ... and when it answers in the protocol but declines (RFC 5321 3.1's 554, IMAP BYE).
_REFUSAL: Mapping[str, re.Pattern[bytes]] = {
    "smtp": re.compile(rb"^[45][0-9][0-9][ -]"),
    "imap": re.compile(rb"^\* BYE\b", re.IGNORECASE),
    "pop3": re.compile(rb"^-ERR\b"),
    "managesieve": re.compile(rb"^(NO|BYE)\b", re.IGNORECASE),
}
_EXPECTED = {"smtp": "220", "imap": "* OK", "pop3": "+OK", "managesieve": '"IMPLEMENTATION"'}
_NAMED = {"smtp": "an SMTP", "imap": "an IMAP", "pop3": "a POP3", "managesieve": "a ManageSieve"}
_MAX_LINE = 1024


def _where(ep: Endpoint) -> str:
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return f"{ep.role} {host}:{ep.port}"


def _os_error(e: OSError) -> str:
    if isinstance(e, socket.gaierror):
        return f"cannot resolve {e.strerror or e}"
    if isinstance(e, ConnectionRefusedError) or e.errno == errno.ECONNREFUSED:
        return "connection refused"
    # "Multiple exceptions: ..." when every address of a name failed: say the first.
    text = e.strerror or str(e) or type(e).__name__
    return text[:1].lower() + text[1:]


async def probe_endpoint(
    target: Target, ep: Endpoint, connect_timeout: float = CONNECT_TIMEOUT
) -> str | None:
    """None when ``ep`` accepts a connection and greets; else one line saying what is wrong."""
    where = _where(ep)
    tls = target.ssl_context() if ep.implicit_tls else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                ep.host,
                ep.port,
                ssl=tls,
                server_hostname=target.server_name(ep) if tls else None,
                limit=_MAX_LINE,
            ),
            min(connect_timeout, target.timeout),
        )
    except TimeoutError:
        return f"{where} unreachable: no answer within {min(connect_timeout, target.timeout):g}s"
    except ssl.SSLError as e:
        why = getattr(e, "verify_message", None) or e.reason or str(e)
        return f"{where}: TLS handshake failed: {why}"
    except OSError as e:
        return f"{where} unreachable: {_os_error(e)}"
    try:
        # Greetings may be held back on purpose (Postfix's postscreen, a greet pause): wait
        # as long as the tests would.
        line = await asyncio.wait_for(reader.readline(), target.timeout)
    except TimeoutError:
        return f"{where}: connected, but no greeting within {target.timeout:g}s"
    except (OSError, ValueError) as e:  # reset, or a first line longer than any greeting
        return f"{where}: connected, but no greeting ({type(e).__name__}: {e})"
    finally:
        writer.close()
        # Closing is a courtesy: the answer is already known.
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    if not line:
        return f"{where}: connected, but closed without a greeting"
    if _GREETING[ep.protocol].match(line):
        return None
    shown = line.decode("ascii", "replace").strip()[:80]
    if _REFUSAL[ep.protocol].match(line):
        return f"{where}: refuses the suite: {shown!r}"
    return (
        f"{where}: greets with {shown!r}, not {_NAMED[ep.protocol]} greeting "
        f"({_EXPECTED[ep.protocol]} expected)"
    )


async def _probe_all(target: Target, connect_timeout: float) -> list[str | None]:
    # All at once: a run against a host that is down costs one timeout, not one per port.
    # Reported in the order the target file lists them.
    eps = list(target.endpoints.values())
    return list(await asyncio.gather(*(probe_endpoint(target, ep, connect_timeout) for ep in eps)))


def probe(target: Target, connect_timeout: float = CONNECT_TIMEOUT) -> list[str]:
    """One line per endpoint of ``target`` that cannot be used; empty when all can."""
    if not target.endpoints:
        return []
    return [line for line in asyncio.run(_probe_all(target, connect_timeout)) if line]
