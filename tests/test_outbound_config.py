"""The outbound config keys: defaults, and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from reference import config
from reference.config import ConfigError, helo_names
from reference.values import HeloName


def test_defaults() -> None:
    cfg = config.load(None)
    sub = cfg.submission
    assert (sub.auth_max_failures, sub.auth_window, sub.auth_lockout, sub.auth_delay) == (
        10,
        15 * 60,
        30 * 60,
        1,
    )
    assert (sub.auth_window.text, sub.auth_lockout.text) == ("15m", "30m")
    assert sub.auth_ignore_networks == ["127.0.0.0/8", "::1/128"]
    assert cfg.headers.remove == ["X-Originating-IP"]
    assert (cfg.queue.concurrency, cfg.queue.bulk_concurrency, cfg.queue.bulk_recipients) == (
        16,
        4,
        20,
    )
    assert cfg.disclaimer.enabled and cfg.relay.helo_names == []
    shown = config.render(cfg)
    for key in ("[submission]", "auth_lockout", "[headers]", "[disclaimer]", "helo_names"):
        assert key in shown


def test_helo_names() -> None:
    names = [HeloName("127.0.1.5=out5.example.test."), HeloName(" ::1 = v6.example.test")]
    assert helo_names(names) == {
        "127.0.1.5": "out5.example.test",
        "::1": "v6.example.test",
    }


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("relay.helo_names", ["127.0.1.5"], "ADDRESS=NAME"),
        ("relay.helo_names", ["not-an-ip=x.test"], "IPv4 or IPv6 address"),
        ("relay.helo_names", ["127.0.1.5=bad name"], "not a host name"),
        ("queue.bulk_concurrency", 0, "at least 1"),
        ("queue.bulk_recipients", -1, "0 (never by count)"),
        ("submission.auth_max_failures", 0, "at least 1"),
        ("submission.auth_lockout", "forever", "not a duration"),
        ("submission.auth_ignore_networks", ["198.51.100.0/33"], "not a network"),
        ("headers.remove", ["Bad Name"], "not a header field name"),
        ("headers.add", ["X-Flag"], "Name: value"),
    ],
)
def test_bad_values_name_the_key(key: str, value: Any, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(None, overrides={key: value})
    assert e.value.key.startswith(key)
    assert why in str(e.value)
