"""Config: embedded defaults, validation that names the key, and the rendered TOML."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from reference import config
from reference.config import ConfigError
from reference.values import Duration


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
    assert config.parse_duration("5m") == 300
    assert config.parse_duration("36d") == 36 * 86400
    assert config.parse_duration("90") == 90
    with pytest.raises(ValueError):
        config.parse_duration("-5m")
