"""`mailspec auth spf | dkim | dmarc`: results and the Authentication-Results the MX would add."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.dns import FakeDNS
from reference.auth import dkim
from reference.auth.keys import KeyStore, txt_strings
from reference.cli import main

MESSAGE = (
    b"From: Billing <billing@bank.example>\r\nTo: alice@example.test\r\n"
    b"Subject: invoice\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@bank.example>\r\n\r\nPlease pay.\r\n"
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeDNS, list[str]]]:
    """bank.example: SPF for 192.0.2.0/24, DMARC p=reject, DKIM keys; common CLI flags."""
    with FakeDNS() as fdns:
        fdns.spf("bank.example", "v=spf1 ip4:192.0.2.0/24 -all")
        fdns.spf("mx.bank.example", "v=spf1 ip4:192.0.2.0/24 -all")
        fdns.dmarc("bank.example", "v=DMARC1; p=reject")
        for k in KeyStore(tmp_path / "keys").generate("bank.example", "s1"):
            fdns.add_txt(k.record_name, *txt_strings(k.public_record()))
        yield fdns, ["--nameserver", fdns.nameserver, "--data-dir", str(tmp_path / "var")]


def signed(tmp_path: Path) -> Path:
    keys = KeyStore(tmp_path / "keys").load("bank.example", "s1")
    path = tmp_path / "signed.eml"
    path.write_bytes(dkim.sign(MESSAGE, keys, now=time.time()) + MESSAGE)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_auth_spf(world: tuple[FakeDNS, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    _, flags = world
    args = ["auth", "spf", "--ip", "198.51.100.1", "--helo", "mx.bank.example"]
    code, out = run(capsys, *args, "--mail-from", "a@bank.example", *flags)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("spf=fail mailfrom=a@bank.example (matched -all)")
    assert lines[1].startswith("spf=fail helo=postmaster@mx.bank.example")
    assert lines[2] == "Authentication-Results: mail.example.test;"
    assert "spf=fail (matched -all) smtp.mailfrom=a@bank.example" in out
    assert "smtp.helo=mx.bank.example" in out
    code, out = run(capsys, *args, "--mail-from", "", "--ip", "192.0.2.7", "--json", *flags)
    data = json.loads(out)
    assert [(c["identity"], c["result"]) for c in data["spf"]] == [("helo", "pass")]
    assert data["authentication_results"].startswith("Authentication-Results: mail.example.test;")


def test_auth_dkim(
    tmp_path: Path, world: tuple[FakeDNS, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, flags = world
    path = signed(tmp_path)
    code, out = run(capsys, "auth", "dkim", str(path), *flags)
    assert code == 0
    assert out.count("dkim=pass d=bank.example") == 2
    assert "header.a=ed25519-sha256" in out
    tampered = tmp_path / "tampered.eml"
    tampered.write_bytes(path.read_bytes().replace(b"Please pay.", b"Pay me instead."))
    code, out = run(capsys, "auth", "dkim", str(tampered), "--json", *flags)
    data = json.loads(out)
    assert [s["result"] for s in data["dkim"]] == ["fail", "fail"]
    assert "dkim=fail" in data["authentication_results"]
    code, out = run(capsys, "auth", "dkim", str(tmp_path / "nope.eml"), *flags)
    assert code == 2


def test_auth_dmarc_says_what_the_mx_would_do(
    tmp_path: Path, world: tuple[FakeDNS, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, flags = world
    spoof = tmp_path / "spoof.eml"
    spoof.write_bytes(MESSAGE)
    args = ["auth", "dmarc", "--ip", "198.51.100.1", "--mail-from", "billing@bank.example"]
    code, out = run(capsys, *args[:2], str(spoof), *args[2:], *flags)
    assert code == 0
    assert (
        "dmarc=fail header.from=bank.example policy=reject requested=reject applied=reject" in out
    )
    assert "action: reject (550 5.7.1 Message refused: not authenticated for bank.example" in out
    assert "dmarc=fail (p=reject sp=reject dis=reject) header.from=bank.example" in out
    # Signed and from an allowed client: accepted, with the field the MX would add.
    code, out = run(
        capsys,
        "auth",
        "dmarc",
        str(signed(tmp_path)),
        "--ip",
        "192.0.2.7",
        "--mail-from",
        "billing@bank.example",
        "--helo",
        "mx.bank.example",
        "--json",
        *flags,
    )
    data = json.loads(out)
    assert data["action"] == "accept" and data["reply"] == ""
    (ev,) = data["dmarc"]
    assert ev["result"] == "pass" and ev["spf_aligned"] and ev["dkim_aligned"]
    ar = data["authentication_results"]
    assert ar.startswith("Authentication-Results: mail.example.test;")
    assert "dmarc=pass" in ar and "spf=pass" in ar and "dkim=pass" in ar


def test_auth_dmarc_input_errors(
    tmp_path: Path, world: tuple[FakeDNS, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, flags = world
    path = tmp_path / "m.eml"
    path.write_bytes(MESSAGE)
    assert main(["auth", "dmarc", str(path), "--ip", "nope", "--mail-from", "a@b", *flags]) == 2
    assert "not an IP address" in capsys.readouterr().err
    assert main(["auth", "spf", "--ip", "192.0.2.1", "--nameserver", "bad", "--mail-from", ""]) == 2
