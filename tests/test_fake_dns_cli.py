"""`mailspec fake-dns` as an operator runs it: a real process, zone files, signals, exit codes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.resolver
import pytest

from fakes.dns.cli import parse_listen

COMMAND = [sys.executable, "-m", "fakes.dns.cli", "fake-dns"]


def test_serves_zone_files_until_sigterm(tmp_path: Path) -> None:
    zone = tmp_path / "example.zone"
    zone.write_text("$ORIGIN example.test.\n@ MX 10 mx\nmx A 192.0.2.1\n")
    bare = tmp_path / "bare.zone"  # no $ORIGIN: given on the command line
    bare.write_text('@ TXT "v=spf1 -all"\n')
    args = ["--listen", "127.0.0.1:0", "--zone", str(zone), "--zone", f"other.test={bare}"]
    with subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "example.zone (2 records)" in line and "bare.zone (1 record)" in line
            port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
            r = dns.resolver.Resolver(configure=False)
            r.nameservers, r.port, r.lifetime = ["127.0.0.1"], port, 2.0
            assert [a.to_text() for a in r.resolve("example.test", "MX")] == ["10 mx.example.test."]
            assert [a.to_text() for a in r.resolve("other.test", "TXT")] == ['"v=spf1 -all"']
        finally:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run([*COMMAND, "--listen", listen], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"cannot listen on {listen}" in done.stderr and "Traceback" not in done.stderr


def test_bad_zone_is_a_clear_error(tmp_path: Path) -> None:
    zone = tmp_path / "broken.zone"
    zone.write_text("ok A 192.0.2.1\nbad MX 10\n")
    done = subprocess.run([*COMMAND, "--zone", str(zone)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "broken.zone: line 2: MX bad" in done.stderr and "Traceback" not in done.stderr


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_listen("[::1]:53") == ("::1", 53)
    for bad in ("127.0.0.1", ":53", "host:port", "h:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)
