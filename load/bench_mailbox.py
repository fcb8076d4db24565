"""Benchmark: IMAP on a mailbox of 100,000 messages (run by hand; not in the test run).

    .venv/bin/python load/bench_mailbox.py [--messages 100000] [--dir /tmp/bench]
                                           [--no-text-index]

Fills an INBOX by dropping files into ``new/`` as another MDA would (so the first open also
measures adoption), then serves it with the reference IMAP server on loopback and times
SELECT, SEARCH and FETCH of ranges from an imapclient session. Alongside each figure it
prints how many message files the server read and how many times it listed the Maildir:
SELECT, flag SEARCH, FETCH of a range and text SEARCH (BODY, TEXT, SUBJECT, FROM ...: the
mailbox's text index) must not read every message file, and SORT and THREAD none (their
header fields are in it). The first text SEARCH indexes the files dropped into ``new/``
(delivery and APPEND index as they store); ``--no-text-index`` drops the index to measure
text SEARCH reading every file, as it did before there was one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reference.clock import RealClock
from reference.credentials import StaticAuthenticator
from reference.imap import ImapServer, searchable_text
from reference.mailbox import MailStore
from reference.mailbox import folder as folder_module
from reference.mailbox.index import INDEX_FILE

ADDRESS, PASSWORD = "bench@example.org", "bench"


class Counters:
    """Message files read and directory listings made by the store, while measuring."""

    def __init__(self) -> None:
        self.reads = 0
        self.scans = 0
        real_read = folder_module.Mailbox.read
        real_scandir = os.scandir

        def read(mailbox: folder_module.Mailbox, uid: int) -> bytes:
            self.reads += 1
            return real_read(mailbox, uid)

        def scandir(path: Any = ".") -> Any:
            if str(path).endswith(("/new", "/cur")):
                self.scans += 1
            return real_scandir(path)

        folder_module.Mailbox.read = read  # type: ignore[method-assign]
        folder_module.os.scandir = scandir  # type: ignore[attr-defined]

    @contextmanager
    def count(self) -> Iterator[dict[str, int]]:
        before = (self.reads, self.scans)
        out: dict[str, int] = {}
        yield out
        out["files read"] = self.reads - before[0]
        out["dir scans"] = self.scans - before[1]


def fill(root: Path, count: int) -> Path:
    """``count`` messages written straight into the INBOX's new/ (no index yet)."""
    store = MailStore(root)
    with store.open(ADDRESS) as inbox:
        new = inbox.path / "new"
    body = b"x" * 1500 + b"\r\n"
    for n in range(count):
        data = (
            b"From: sender%d@example.net\r\nTo: bench@example.org\r\n"
            b"Subject: message %d\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            b"Message-ID: <%d@bench>\r\n\r\nHello, this is note %d.\r\n" % (n % 97, n, n, n)
        ) + body
        path = new / f"{1_700_000_000 + n}.M{n}P1.bench"
        path.write_bytes(data)
        if n % 3 == 0:
            path.rename(new.parent / "cur" / (path.name + ":2,S"))  # a third already read
    return new.parent


def serve(store: MailStore) -> tuple[int, Callable[[], None]]:
    """The IMAP server on a loopback port in a thread; returns the port and a stopper."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server_box = ImapServer(
            store,
            StaticAuthenticator({ADDRESS: PASSWORD}),
            hostname="bench.example.org",
            tls_context=None,
            clock=RealClock(),
            allow_plaintext=True,
        )

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await server_box.handle(r, w, tls=False)

        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["loop"] = loop
        ready.set()
        loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)

    def stop() -> None:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(10)

    return holder["port"], stop


class Raw:
    """A minimal IMAP client: one command, every byte up to its tagged reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Read from ``pos`` on, compacted only before each recv: slicing off every line
        # copied the rest of the buffer per line, over a third of the samples of FETCH 1:*
        # (FLAGS) of 100,000 messages in a profile (py-spy), all of it in this client.
        self.buffer = bytearray()
        self.pos = 0
        self.counter = 0
        self.read_line()

    def receive(self) -> None:
        del self.buffer[: self.pos]
        self.pos = 0
        self.buffer += self.sock.recv(1 << 20)

    def read_line(self) -> bytes:
        end = self.buffer.find(b"\r\n", self.pos)
        while end < 0:
            self.receive()
            end = self.buffer.find(b"\r\n", self.pos)
        line = bytes(self.buffer[self.pos : end])
        self.pos = end + 2
        return line

    def command(self, text: str) -> int:
        """Send ``text``; returns the number of response bytes (literals included)."""
        self.counter += 1
        tag = b"b%d" % self.counter
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        total = 0
        while True:
            line = self.read_line()
            total += len(line) + 2
            while line.endswith(b"}") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -1])
                while len(self.buffer) - self.pos < size:
                    self.receive()
                self.pos += size
                total += size
                line = self.read_line()
                total += len(line) + 2
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode())
                return total


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """The median wall time of ``fn`` in milliseconds, and its last result."""
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the mailbox")
    parser.add_argument(
        "--no-text-index", action="store_true", help="text SEARCH reading every file"
    )
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-mailbox-"))
    n = args.messages
    rows: list[tuple[str, float, dict[str, int]]] = []
    counters = Counters()
    try:
        started = time.perf_counter()
        inbox_dir = fill(root, n)
        print(f"filled {n} messages in {time.perf_counter() - started:.1f} s under {root}")
        store = MailStore(root, text_of=searchable_text)  # as the server builds it
        with counters.count() as c:
            started = time.perf_counter()
            store.open(ADDRESS).close()  # the first open adopts every file
            rows.append(
                (
                    "first open: adopt all files into the index",
                    (time.perf_counter() - started) * 1000,
                    c,
                )
            )
        if args.no_text_index:
            with sqlite3.connect(inbox_dir / INDEX_FILE) as db:
                db.execute("DROP TABLE texts")
        with counters.count() as c:
            ms, _ = timed(lambda: store.open(ADDRESS).close(), repeat=20)
            rows.append(("open again (directory unchanged)", ms, c))
        with counters.count() as c:
            ms, _ = timed(lambda: store.deliver(ADDRESS, b"Subject: new\r\n\r\nhi\r\n"), repeat=20)
            rows.append(("deliver one message into it", ms, c))

        port, stop = serve(store)
        client = Raw(port)
        client.command(f"LOGIN {ADDRESS} {PASSWORD}")
        last = n + 20  # the deliveries above
        mid = max(1, n // 2)
        some = min(1000, n)
        note = (n * 3) // 4
        try:
            cases: list[tuple[str, str]] = [
                ("SELECT INBOX", "SELECT INBOX"),
                ("NOOP (nothing changed)", "NOOP"),
                ("SEARCH UNSEEN (flags only)", "SEARCH UNSEEN"),
                (f"UID SEARCH UID {mid}:{mid + 999}", f"UID SEARCH UID {mid}:{mid + 999}"),
                ("FETCH 1:100 (FLAGS RFC822.SIZE)", "FETCH 1:100 (FLAGS RFC822.SIZE)"),
                (f"FETCH {mid}:{mid + 99} (ENVELOPE)", f"FETCH {mid}:{mid + 99} (ENVELOPE)"),
                ("UID FETCH last 100 (BODY.PEEK[HEADER])",
                 f"UID FETCH {last - 99}:* (BODY.PEEK[HEADER])"),
                ("FETCH 1:* (FLAGS), the whole mailbox", "FETCH 1:* (FLAGS)"),
                (f"STORE 1:{some} +FLAGS.SILENT (\\Flagged)",
                 f"STORE 1:{some} +FLAGS.SILENT (\\Flagged)"),
                ("SEARCH BODY, first (indexes the dropped files)", 'SEARCH BODY "no such"'),
                # SUBJECT, FROM ... from the text index too; HEADER reads the files whose
                # header text holds its string.
                ("SEARCH SUBJECT one message's", 'SEARCH SUBJECT "message 4242"'),
                ("SEARCH FROM a sender", 'SEARCH FROM "sender42@"'),
                ("HEADER Subject one message's", 'SEARCH HEADER Subject "message 4242"'),
                ("SEARCH BODY one message's words", f'SEARCH BODY "is note {note}."'),
                ("SEARCH TEXT a sender (header)", 'SEARCH TEXT "sender42@"'),
                ("SEARCH BODY FLAGGED (with a flag)", f'SEARCH FLAGGED BODY "note {note}."'),
                ("SEARCH BODY in every message", 'SEARCH BODY "hello, this"'),
                # Header fields from the text index: no file read for either.
                ("SORT (SUBJECT) of 11 text SEARCH hits", 'SORT (SUBJECT) UTF-8 BODY "note 7500"'),
                ("THREAD REFERENCES of the same", 'THREAD REFERENCES UTF-8 BODY "note 7500"'),
            ]  # fmt: skip
            for label, text in cases:
                once = ("every file", "whole", "first", "every message")
                # Without the index each text SEARCH reads every file: once is enough.
                reads_all = args.no_text_index and label.startswith(("SEARCH BODY", "SEARCH TEXT"))
                repeat = 1 if any(word in label for word in once) or reads_all else 5
                with counters.count() as c:
                    ms, _ = timed(lambda text=text: client.command(text), repeat=repeat)
                rows.append((label, ms, {k: v // repeat for k, v in c.items()}))
            client.command("LOGOUT")
            client.sock.close()
            time.sleep(0.2)  # let the session end on its own before the loop stops
        finally:
            stop()
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    width = max(len(label) for label, _, _ in rows)
    print(f"\n{'operation':<{width}}  {'median ms':>10}  {'files read':>10}  {'dir scans':>9}")
    for label, ms, c in rows:
        reads, scans = c.get("files read", 0), c.get("dir scans", 0)
        print(f"{label:<{width}}  {ms:>10.1f}  {reads:>10}  {scans:>9}")


if __name__ == "__main__":
    main()
