"""The fake authoritative DNS server: UDP and TCP on one loopback port, in its own thread."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import threading
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from os import PathLike
from types import TracebackType
from typing import Any, cast

import dns.asyncresolver
from dnslib import EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSRecord

from fakes.dns.blocklist import Blocklist
from fakes.dns.store import Failure, Store
from fakes.dns.zone import (
    DEFAULT_TTL,
    MAX_TTL,
    Record,
    ZoneError,
    label,
    normalize_name,
    parse_rdata,
    parse_zone,
    txt_record,
)
from reference.clock import Clock, RealClock

log = logging.getLogger(__name__)

UDP_PAYLOAD = 1232  # the EDNS0 size we advertise (DNS flag day 2020)
TCP_IDLE = 10.0  # seconds a TCP connection may stay silent (RFC 7766 6.2.3)
TCP_WRITE_BUFFER = 1 << 20  # replies queued for a TCP client that does not read: then we close
MAX_PENDING = 1024  # queries being answered at once; beyond that queries are dropped
LOG_SIZE = 100_000  # queries kept in the log; the oldest go first
BIND_ATTEMPTS = 20  # port 0: tries to find a port free for both UDP and TCP


@dataclass(frozen=True)
class Query:
    """One query as the server saw it.

    ``rcode`` is the answer's rcode name ("NOERROR", "NXDOMAIN", "SERVFAIL", ...), or
    "DROPPED" when a timeout failure swallowed it. ``truncated`` is True for a UDP answer
    sent with TC=1 (the client should come back over TCP).
    """

    client: tuple[str, int]
    name: str
    rtype: str
    transport: str
    rcode: str
    time: float
    truncated: bool = False


class FakeDNS:
    """An authoritative DNS server fed from plain data, changeable while it runs.

    It runs its own event loop in a background thread, so sync tests, async tests and other
    threads all use it the same way; every method is thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None) -> None:
        self.host = host
        self.port = port
        self._requested_port = port
        self._clock: Clock = clock or RealClock()
        self._store = Store()
        self._log: deque[Query] = deque(maxlen=LOG_SIZE)
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Transport] = set()

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> FakeDNS:
        """Bind UDP and TCP on the same port and serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError("FakeDNS is already running")
        udp, tcp = _bind(self.host, self._requested_port)  # errors surface here, in the caller
        self.port = udp.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(udp, tcp, ready, errors), name=f"fake-dns:{self.port}"
        )
        self._thread.daemon = True  # a test that forgets stop() must not hang the interpreter
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop serving, close every socket and join the thread. Safe to call twice."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None:
            return
        if stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> FakeDNS:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def nameserver(self) -> str:
        """HOST:PORT for resolver configuration ("[::1]:PORT" for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def resolver(self, lifetime: float = 2.0) -> dns.asyncresolver.Resolver:
        """A resolver that asks this server only (never the system's), each lookup bounded
        by ``lifetime`` seconds."""
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [self.host]
        r.port = self.port
        r.lifetime = r.timeout = lifetime
        return r

    def _run(
        self,
        udp: socket.socket,
        tcp: socket.socket,
        ready: threading.Event,
        errors: list[BaseException],
    ) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(udp, tcp, ready))
        except Exception as exc:  # reported to start() if it happens before serving
            errors.append(exc)
            udp.close()
            tcp.close()
            if ready.is_set():
                log.exception("event=fake_dns_crashed port=%s", self.port)
        finally:
            ready.set()
            loop.close()

    async def _serve(self, udp: socket.socket, tcp: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._tasks, self._connections = set(), set()  # a restart must not see the old loop's
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp)
        try:
            server = await loop.create_server(lambda: _TCP(self), sock=tcp)
        except BaseException:
            transport.close()
            raise
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            # Stop accepting, then let connections accepted a moment ago reach connection_made:
            # closing the server first would make asyncio 3.11 drop (and leak) their sockets.
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(100):
                accepting = asyncio.all_tasks() - self._tasks - {asyncio.current_task()}
                if not accepting:
                    break
                await asyncio.sleep(0)
            server.close()
            transport.close()
            for connection in list(self._connections):  # 3.11's server.close() leaves them open
                connection.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await server.wait_closed()
            await asyncio.sleep(0)  # transports close their sockets in a callback: let it run

    # -- data ---------------------------------------------------------------------------

    def add(self, name: str, rtype: str, rdata: str, ttl: int = DEFAULT_TTL) -> None:
        """Add a record from master-file rdata; names in it are absolute.

        TXT rdata not starting with '"' is one value, spaces included ("v=spf1 -all"); quoted
        rdata is a list of character-strings ('"a" "b"'). Values over 255 bytes are split.
        """
        rtype, name = rtype.upper(), normalize_name(name)
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError(f"TTL {ttl} out of range")
        try:
            if rtype == "TXT" and not rdata.lstrip().startswith('"'):
                record = txt_record(name, [rdata.encode("utf-8")], ttl)
            else:
                record = Record(name, rtype, ttl, parse_rdata(rtype, rdata))
        except ValueError as exc:
            raise ValueError(f"{rtype} {name}: {exc}") from None
        self._store.add(record)

    def add_txt(self, name: str, *strings: str | bytes, ttl: int = DEFAULT_TTL) -> None:
        """Add one TXT record made of these character-strings, byte for byte."""
        data = [s.encode("utf-8") if isinstance(s, str) else s for s in strings]
        self._store.add(txt_record(name, data, ttl))

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove a name's records of one type, or all of them."""
        self._store.remove(name, rtype)

    def records(self) -> list[Record]:
        """Every record held, for inspection and debugging."""
        return self._store.records()

    def load_zone(self, text: str, origin: str | None = None) -> None:
        """Add every record of master-file text; nothing is added if any line is wrong."""
        for record in parse_zone(text, origin):
            self._store.add(record)

    def load_zone_file(self, path: str | PathLike[str], origin: str | None = None) -> None:
        """Load a master file; a ZoneError names the file and the line."""
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            self.load_zone(text, origin)
        except ZoneError as exc:
            raise ZoneError(exc.line, exc.message, source=str(path)) from None

    def _set_txt(self, name: str, value: str, ttl: int, prefix: str | None = None) -> None:
        """Replace the TXT records at name (those starting with prefix, if given) by one."""
        record = txt_record(name, [value.encode("utf-8")], ttl)
        marker = prefix.lower().encode() if prefix else b""
        self._store.add(record, replace=lambda r: b"".join(r.rdata.data).lower().startswith(marker))

    def spf(self, domain: str, record: str, ttl: int = DEFAULT_TTL) -> None:
        """Set the SPF record of a domain (other TXT records there stay)."""
        self._set_txt(domain, record, ttl, prefix="v=spf1")

    def dkim(self, domain: str, selector: str, record: str, ttl: int = DEFAULT_TTL) -> None:
        """Set a DKIM key record ("v=DKIM1; k=rsa; p=...") at selector._domainkey.domain."""
        self._set_txt(f"{selector}._domainkey.{domain}", record, ttl)

    def dmarc(self, domain: str, record: str, ttl: int = DEFAULT_TTL) -> None:
        """Set the DMARC record ("v=DMARC1; p=reject") at _dmarc.domain."""
        self._set_txt(f"_dmarc.{domain}", record, ttl)

    def mta_sts(self, domain: str, id: str, ttl: int = DEFAULT_TTL) -> None:
        """Set the MTA-STS record (RFC 8461 3.1) at _mta-sts.domain."""
        self._set_txt(f"_mta-sts.{domain}", f"v=STSv1; id={id}", ttl)

    def tlsrpt(self, domain: str, rua: str, ttl: int = DEFAULT_TTL) -> None:
        """Set the TLS-RPT record (RFC 8460 3) at _smtp._tls.domain; rua like "mailto:a@b"."""
        self._set_txt(f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua={rua}", ttl)

    def ptr(self, ip: str, name: str, ttl: int = DEFAULT_TTL) -> None:
        """Add the reverse (PTR) record of an IPv4 or IPv6 address."""
        self.add(ipaddress.ip_address(ip).reverse_pointer, "PTR", name, ttl)

    def blocklist(self, zone: str) -> Blocklist:
        """A DNSBL served under zone (e.g. "zen.dnsbl.test")."""
        return Blocklist(self._store, zone)

    # -- failures -----------------------------------------------------------------------

    def fail(self, name: str, rtype: str = "*", mode: str = "servfail", delay: float = 0.0) -> None:
        """Make queries for name (and type, "*" for any) fail.

        Modes: servfail, refused, timeout (the query is dropped), truncate (UDP answers carry
        TC=1 and no data; TCP answers in full), slow (the right answer after ``delay``
        seconds). A delay applies to every mode. name may be "*.zone" for every name below.
        """
        if mode == "slow" and delay <= 0:
            raise ValueError("mode slow needs a delay > 0")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self._store.fail(name, rtype, Failure(mode, delay))

    def heal(self, name: str | None = None) -> None:
        """Remove the failures injected for name, or all of them."""
        self._store.heal(name)

    # -- query log ----------------------------------------------------------------------

    @property
    def queries(self) -> list[Query]:
        """A copy of the query log, oldest first (the last LOG_SIZE queries)."""
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _record(self, query: Query) -> None:
        with self._log_lock:
            self._log.append(query)

    # -- the wire -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if len(self._tasks) >= MAX_PENDING:
            coro.close()  # overloaded: drop, as a real server would
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=fake_dns_error", exc_info=task.exception())

    async def _answer(self, data: bytes, peer: Any, transport: str) -> bytes | None:
        """The reply to one query, or None to stay silent; every query is logged."""
        client, when = (str(peer[0]), int(peer[1])), self._clock.now()
        try:
            request = DNSRecord.parse(data)
        except Exception:  # dnslib raises many exception types on garbage: all mean FORMERR
            self._record(Query(client, "", "", transport, "FORMERR", when))
            if len(data) < 12:
                return None
            header = DNSHeader(id=int.from_bytes(data[:2], "big"), qr=1, rcode=RCODE.FORMERR)
            return bytes(DNSRecord(header).pack())
        if request.header.qr:
            return None  # a response sent to us: answering it could start a loop
        if request.header.opcode != 0 or len(request.questions) != 1:
            # RFC 9619: a query has exactly one question.
            reply = _reply_to(request)
            reply.header.rcode = RCODE.NOTIMP if request.header.opcode else RCODE.FORMERR
            self._record(Query(client, "", "", transport, str(RCODE[reply.header.rcode]), when))
            return bytes(reply.pack())
        name = b".".join(request.q.qname.label).lower().decode("latin-1")
        rtype = str(QTYPE.get(request.q.qtype))
        failure = self._store.failure(name, rtype)
        if failure and failure.delay:
            # Real time on purpose: this simulates network latency, and the client under test
            # measures its timeout in real time.
            await asyncio.sleep(failure.delay)
        if failure and failure.mode == "timeout":
            self._record(Query(client, name, rtype, transport, "DROPPED", when))
            return None
        wire, rcode, truncated = self._reply(request, name, rtype, failure, transport)
        self._record(Query(client, name, rtype, transport, str(RCODE[rcode]), when, truncated))
        return wire

    def _reply(
        self, request: Any, name: str, rtype: str, failure: Failure | None, transport: str
    ) -> tuple[bytes, int, bool]:
        """The reply to a well-formed query, its rcode, and whether it was truncated."""
        mode = failure.mode if failure else ""
        reply = _reply_to(request)
        if mode in ("servfail", "refused"):
            reply.header.rcode = RCODE.SERVFAIL if mode == "servfail" else RCODE.REFUSED
        elif request.q.qclass not in (1, 255):
            reply.header.rcode = RCODE.REFUSED  # we only hold class IN
        elif not (mode == "truncate" and transport == "udp"):
            found = self._store.resolve(name, rtype)
            reply.header.rcode = found.rcode
            reply.rr = [_rr(owner, r) for owner, r in found.answer]
            reply.auth = [_rr(owner, r) for owner, r in found.authority]
        wire = bytes(reply.pack())
        # RFC 1035 4.2.1: 512 bytes over UDP, or the client's EDNS0 size (RFC 6891 6.2.5).
        opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        limit = max(512, opt.rclass) if opt is not None else 512
        if transport == "udp" and (len(wire) > limit or mode == "truncate"):
            # Not dnslib's truncate(): it drops the question, and dnspython ignores the reply.
            short = _reply_to(request)
            short.header.tc, short.header.rcode = 1, reply.header.rcode
            return bytes(short.pack()), reply.header.rcode, True
        if len(wire) > 65535:
            log.error("event=fake_dns_answer_too_big name=%s rtype=%s", name, rtype)
            reply = _reply_to(request)
            reply.header.rcode = RCODE.SERVFAIL
            wire = bytes(reply.pack())
        return wire, reply.header.rcode, False


def _reply_to(request: Any) -> Any:
    """An empty reply: question kept, authoritative, EDNS answered with EDNS (RFC 6891 7)."""
    reply = request.reply(ra=1, aa=1)  # ra=1: tests use us as their (only) resolver
    reply.header.ad = 0  # we validate nothing
    if any(rr.rtype == QTYPE.OPT for rr in request.ar):
        reply.add_ar(EDNS0(udp_len=UDP_PAYLOAD))
    return reply


def _rr(owner: str, record: Record) -> Any:
    return RR(label(owner), getattr(QTYPE, record.rtype), 1, record.ttl, record.rdata)


class _UDP(asyncio.DatagramProtocol):
    """Each datagram is answered in its own task, so a slow answer does not hold the others."""

    def __init__(self, server: FakeDNS) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: Python 3.11's selector transport does not subclass it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server._spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self.server._answer(data, addr, "udp")
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP "port unreachable" from a client that gave up: nothing to do


class _TCP(asyncio.Protocol):
    """One TCP client: length-prefixed queries (RFC 1035 4.2.2), several per connection.

    The buffer holds at most one partial message (< 64 KiB): complete ones are handed out as
    soon as they arrive, each answered in its own task (RFC 7766 6.2.1.1 allows any order).
    """

    def __init__(self, server: FakeDNS) -> None:
        self.server = server
        self.buffer = bytearray()
        self.peer: Any = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        self.server._connections.add(self.transport)
        self._touch()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._touch()
        while len(self.buffer) >= 2:
            end = 2 + int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < end:
                break
            message = bytes(self.buffer[2:end])
            del self.buffer[:end]
            self.server._spawn(self._reply(message))

    async def _reply(self, message: bytes) -> None:
        reply = await self.server._answer(message, self.peer, "tcp")
        transport = self.transport
        if reply is None or transport is None or transport.is_closing():
            return
        transport.write(len(reply).to_bytes(2, "big") + reply)
        if transport.get_write_buffer_size() > TCP_WRITE_BUFFER:
            transport.close()
        self._touch()

    def _touch(self) -> None:
        """Restart the idle timer: a silent client is disconnected after TCP_IDLE seconds."""
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            loop = asyncio.get_running_loop()
            self.idle = loop.call_later(TCP_IDLE, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.server._connections.discard(self.transport)


def _bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(BIND_ATTEMPTS):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
        except OSError:
            udp.close()
            raise
        tcp = socket.socket(family, socket.SOCK_STREAM)
        # Lets a restarted server take its port back from connections in TIME_WAIT.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError as exc:
            tcp.close()
            udp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the free UDP port is taken for TCP: try another
            raise
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")
