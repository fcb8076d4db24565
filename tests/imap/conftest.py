"""Fixtures of the IMAP server tests: a server factory per test (the certificate per module
comes from the top-level conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stream_servers import Start, line_servers

from reference.imap import ImapServer

from .support import ALICE, PASSWORD


@pytest.fixture
async def start(tmp_path: Path, certs: tuple[Path, Path]) -> AsyncIterator[Start]:
    """``await start(**options)``: an ImapServer (options go to it, plus ``implicit_tls`` and
    ``quota``) on a fresh store, with alice's account; every raw client closed at the end."""
    users = {ALICE: PASSWORD}
    async with line_servers(tmp_path, certs, ImapServer, "imap.example.org", users) as start:
        yield start
