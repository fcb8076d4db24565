"""Scenario fixtures: a real `mailspec serve` process with CLI-made accounts, and TLS clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.dns import FakeDNS
from reference.testing import ServedProcess, mailspec, serve_process, write_config

__all__ = ["Served", "mailspec", "serve"]

Served = ServedProcess
serve = serve_process


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    """An empty fake DNS: the scenarios' servers never ask the system resolver."""
    with FakeDNS() as dns:
        yield dns


@pytest.fixture
def served(tmp_path: Path, data_dir: Path, fake_dns: FakeDNS) -> Iterator[Served]:
    config = write_config(tmp_path / "mailspec.toml", dns={"nameservers": [fake_dns.nameserver]})
    mailspec("domain", "add", "example.test", data_dir=data_dir)
    mailspec("user", "add", "alice@example.test", "--password", "alice-pw", data_dir=data_dir)
    mailspec("user", "add", "bob@example.test", "--password", "bob-pw", data_dir=data_dir)
    s = serve(data_dir, config)
    yield s
    s.stop()
