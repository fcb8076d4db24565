"""Fixtures of the IMAP server tests: a certificate per module, a server factory per test."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stream_servers import make_certs, start_env, stream_servers

from reference.imap import ImapServer

from .support import ALICE, PASSWORD, Raw, Start


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def start(tmp_path: Path, certs: tuple[Path, Path]) -> AsyncIterator[Start]:
    """``await start(**options)``: an ImapServer (options go to it, plus ``implicit_tls`` and
    ``quota``) on a fresh store, with alice's account; every raw client closed at the end."""
    async with stream_servers() as serve:
        start = functools.partial(
            start_env, serve, tmp_path, certs, ImapServer, "imap.example.org", {ALICE: PASSWORD}
        )
        yield start
        for raw in Raw.opened:
            raw.writer.close()
        Raw.opened.clear()
