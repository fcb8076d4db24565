"""Pytest fixtures for the fake DNS server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.dns.server import FakeDNS


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    """A running FakeDNS on a free loopback port, stopped after the test."""
    with FakeDNS() as dns:
        yield dns
