"""Config: embedded defaults, validation that names the key, and the rendered TOML."""

from __future__ import annotations

import ast
import copy
import ipaddress
import tomllib
from pathlib import Path

import pytest

from reference import config
from reference.config import ConfigError
from reference.values import Duration, Limit, parse_duration


def test_defaults_need_no_file() -> None:
    cfg = config.load(None)
    assert cfg.listen.mx == "127.0.0.1:2525"
    assert [cfg.address(n)[1] for n in config.LISTENERS] == [
        2525,
        2587,
        2465,
        2143,
        2993,
        2110,
        2995,
        2419,
        2443,
    ]
    assert cfg.server.data_dir == "./var"
    assert cfg.relay.port == 25
    # Parsed once, at load: a number of seconds that remembers how it was written.
    assert cfg.relay.max_age == 86400 and cfg.relay.max_age.text == "24h"
    assert cfg.dns.nameservers == []


def test_data_dir_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\ndata_dir = "/srv/mail"\nhostname = "mx.example.test"\n')
    cfg = config.load(f, data_dir=str(tmp_path / "d"))
    assert cfg.server.data_dir == str(tmp_path / "d")
    assert cfg.server.hostname == "mx.example.test"


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        ('[listen]\nmxx = "127.0.0.1:25"\n', "listen.mxx", "unknown key"),
        ('[lisen]\nmx = "127.0.0.1:25"\n', "lisen", "unknown section"),
        ('[listen]\nmx = "127.0.0.1:99999"\n', "listen.mx", "out of range"),
        ('[listen]\nimap = "localhost"\n', "listen.imap", "host:port"),
        ('[relay]\nport = "25"\n', "relay.port", "integer"),
        ('[relay]\nmax_age = "soon"\n', "relay.max_age", "duration"),
        ('[relay]\nsource_addresses = ["127.0.1.0/33"]\n', "relay.source_addresses[0]", "CIDR"),
        ('[relay]\nsmarthost = "smarthost"\n', "relay.smarthost", "host:port"),
        ('[dns]\nnameservers = ["ns.example:53"]\n', "dns.nameservers[0]", "IP address"),
        ("[smtp]\nmax_recipients = 10\n", "smtp.max_recipients", "at least 100"),
        ('[tls]\ncert = "/x.pem"\n', "tls.key", "go together"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str, why: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(f)
    assert e.value.key == key
    assert why in str(e.value)
    assert f"'{key}'" in str(e.value)


def test_not_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[listen\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(f)


def test_rendered_config_reads_back_the_same(tmp_path: Path) -> None:
    cfg = config.load(
        None,
        overrides={"relay.source_addresses": ["127.0.1.0/24"], "relay.smarthost": "127.0.2.9:2525"},
    )
    text = config.render(cfg)
    again = config.from_dict(tomllib.loads(text))
    assert again == cfg


def test_every_key_is_documented() -> None:
    text = config.render(config.load(None))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line:
            assert lines[i - 1].startswith("# "), f"{line} has no documentation"


def test_durations_are_parsed_at_load_and_shown_as_written(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[greylist]\ndelay = "90s"\nwindow = 7200\n')
    cfg = config.load(f)
    assert (cfg.greylist.delay, cfg.greylist.window) == (90.0, 7200.0)
    assert type(cfg.greylist.delay) is Duration
    text = config.render(cfg, with_docs=False)
    assert 'delay = "90s"' in text and 'window = "7200s"' in text and 'whitelist = "36d"' in text
    import tomllib

    assert config.from_dict(tomllib.loads(text)) == cfg  # what is shown reads back the same
    # Copied and rebuilt (the cluster writes each node's config so), they stay as written.
    again = config.from_dict(config.as_dict(cfg))
    assert again == cfg and again.greylist.whitelist.text == "36d"
    assert copy.deepcopy(cfg.greylist.whitelist).text == "36d"
    assert Duration(36 * 86400.0).text == "3110400s" and Duration(0.25) == 0.25
    f.write_text("[greylist]\ndelay = true\n")
    with pytest.raises(config.ConfigError, match=r"greylist\.delay"):
        config.load(f)


def test_durations() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("36d") == 36 * 86400
    assert parse_duration("90") == 90
    with pytest.raises(ValueError):
        parse_duration("-5m")


def test_values_are_parsed_once_at_load() -> None:
    # host:port pairs, rate limits, zones, header rules and the retry schedule come out of
    # the config typed: the composition root reads their parts and parses nothing.
    cfg = config.load(
        None,
        overrides={
            "relay.smarthost": "[::1]:2526",
            "dns.nameservers": ["127.0.0.1:5353", "192.0.2.53"],
            "antivirus.clamd": "/run/clamd.ctl",
            "ratelimit.overrides": ["Alice@Example.test: messages=5/1h"],
            "dnsbl.zones": ["zen.test=127.0.0.2:7"],
            "headers.add": ["X-Flag: yes"],
            "listen.mx_proxy_from": ["198.51.100.9/24"],
        },
    )
    assert cfg.address("mx") == ("127.0.0.1", 2525)
    assert cfg.relay.smarthost is not None and cfg.relay.smarthost.pair == ("::1", 2526)
    assert [(n.host, n.port) for n in cfg.dns.nameservers] == [
        ("127.0.0.1", 5353),
        ("192.0.2.53", 53),
    ]
    assert cfg.antivirus.clamd is not None and cfg.antivirus.clamd.path == "/run/clamd.ctl"
    assert cfg.ratelimit.recipients.limit == Limit(60, 300)
    assert cfg.ratelimit.messages.limit is None
    (override,) = cfg.ratelimit.overrides
    assert (override.who, override.limits.messages) == ("alice@example.test", Limit(5, 3600))
    (zone,) = cfg.dnsbl.zones
    assert (zone.zone, zone.weights) == ("zen.test", {"127.0.0.2": 7.0})
    assert [f.line for f in cfg.headers.add] == [b"X-Flag: yes\r\n"]
    proxies = [n.network for n in cfg.listen.mx_proxy_from]
    assert proxies == [ipaddress.ip_network("198.51.100.0/24")]
    assert [r.text for r in cfg.queue.retry][:2] == ["1m", "5m"] and cfg.queue.retry[0] == 60
    # ... and written back as they were spelled.
    again = config.from_dict(config.as_dict(cfg))
    assert again == cfg and config.render(again) == config.render(cfg)
    assert 'smarthost = "[::1]:2526"' in config.render(cfg)
    assert 'smarthost = ""' in config.render(config.load(None))


_CONFIG_PARSERS = {
    "parse_hostport",
    "parse_limit",
    "parse_overrides",
    "parse_dnsbl",
    "parse_header_rules",
    "parse_duration",
}


def test_nothing_past_the_config_parses_a_config_string() -> None:
    # The config layer (config.py, and values.py where the parsers live) parses; every
    # other module of the reference reads the typed values.
    root = Path(config.__file__).resolve().parent
    calls = []
    for path in sorted(root.rglob("*.py")):
        if path.name in ("config.py", "values.py") and path.parent == root:
            continue
        if path == root / "directory" / "cos.py":
            continue  # a class of service's rate limits: directory data, written like config
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in _CONFIG_PARSERS:
                    calls.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    assert calls == []
