"""Pytest fixtures: ``fake_mx`` (one accept-all fake MX) and ``fake_internet`` (DNS + providers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from fakes.mx.server import FakeMX

if TYPE_CHECKING:
    from fakes.internet import FakeInternet

__all__ = ["fake_internet", "fake_mx"]


@pytest.fixture
def fake_mx() -> Iterator[FakeMX]:
    """A started fake MX on 127.0.0.1 and a free port, accepting everything; set ``.policy``."""
    with FakeMX("127.0.0.1", 0, name="fake-mx") as mx:
        yield mx


@pytest.fixture
def fake_internet() -> Iterator[FakeInternet]:
    """The fake DNS plus gmail.test, outlook.test, yahoo.test and a smarthost, all started."""
    from fakes.internet import FakeInternet  # late: fakes.internet needs fakes.dns

    with FakeInternet() as internet:
        yield internet
