"""``mailspec fake-mx`` (run here as ``python -m fakes.mx.cli``): serve, record, stop, fail."""

from __future__ import annotations

import argparse
import json
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.mx.cli import register

POLICY = """
[[rules]]
stage = "rcpt"
source = ["127.0.1.5"]
action = "outlook.blocklist.5xx"
"""


def fake_mx(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fakes.mx.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_records_and_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    proc = fake_mx(
        "--listen", "127.0.2.40:0", "--policy", str(tmp_path / "policy.toml"),
        "--record", str(tmp_path / "out"), "--hostname", "mx.outlook.test",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fake-mx fake-mx listening on 127.0.2.40:")
        port = int(line.rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.2.40", port, source_address=("127.0.1.5", 0), timeout=5) as s:
            assert s.ehlo()[1].startswith(b"mx.outlook.test")
            s.mail("alice@example.test")
            assert s.rcpt("bob@outlook.test")[0] == 550
        with smtplib.SMTP("127.0.2.40", port, timeout=5) as s:
            s.sendmail("alice@example.test", ["bob@outlook.test"], b"Subject: hi\r\n\r\nhi\r\n")
        proc.send_signal(sig)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.communicate()
    [eml] = (tmp_path / "out").glob("*.eml")
    assert eml.read_bytes() == b"Subject: hi\r\n\r\nhi\r\n"
    meta = json.loads(eml.with_suffix(".json").read_text())
    assert meta["rcpt_tos"] == ["bob@outlook.test"] and meta["source"] == "127.0.0.1"


def test_port_in_use_is_a_clear_error_with_exit_code_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.2.41", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "fakes.mx.cli", "--listen", f"127.0.2.41:{port}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.2.41:{port}: address already in use" in proc.stderr


def test_bad_policy_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[[rules]]\naction = 'nonsense'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fakes.mx.cli", "--policy", str(tmp_path / "bad.toml")],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2 and "rules[1]: unknown action 'nonsense'" in proc.stderr


def test_register_adds_the_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="mailspec")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config")
    register(parser.add_subparsers(), [common])
    args = parser.parse_args(["fake-mx", "--listen", "127.0.0.2:2525", "--no-starttls"])
    assert args.listen == [("127.0.0.2", 2525)] and not args.starttls and args.config is None
    assert args.func.__name__ == "run"
    with pytest.raises(SystemExit):
        parser.parse_args(["fake-mx", "--listen", "no-port"])
