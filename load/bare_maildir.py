"""The benchmark's ceiling: bare aiosmtpd writing each message durably into a Maildir.

    python -m load.bare_maildir --listen 127.0.0.1:0 --maildir DIR

No policy, no spool, no index: each message is written to ``DIR/<recipient>/tmp``, fsynced,
renamed into ``new/`` and the directory fsynced (the same durability a Maildir delivery of
the reference has) before the 250 goes back. What the Python stack can do on this machine
with nothing else in the way; the reference's figures are read against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_SAFE = re.compile(r"[^a-z0-9@._-]")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def deliver(root: Path, rcpt: str, data: bytes) -> str:
    box = root / _SAFE.sub("_", rcpt.lower())
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(8)}.P{os.getpid()}.bare"
    tmp = box / "tmp" / name
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, box / "new" / name)
    _fsync_dir(box / "new")
    return name


class MaildirHandler:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        names = [
            await asyncio.to_thread(deliver, self.root, rcpt, data) for rcpt in envelope.rcpt_tos
        ]
        return f"250 2.0.0 Ok: delivered as {names[0] if names else '-'}"


async def serve(host: str, port: int, root: Path) -> None:
    handler = MaildirHandler(root)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(handler, hostname="bare.load.test", ident="bare aiosmtpd", loop=loop)

    server = await loop.create_server(factory, host, port, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"bare-maildir listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m load.bare_maildir", description=__doc__)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--maildir", type=Path, required=True)
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port), args.maildir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
