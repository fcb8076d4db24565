"""`mailspec dkim keygen`, `mailspec dns records` and `mailspec auth check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.dns import FakeDNS, parse_zone
from reference.cli import main


def records(out: str) -> list[str]:
    return [line for line in out.splitlines() if line and not line.startswith(";")]


def test_keygen_prints_records_and_keeps_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dkim", "keygen", "example.test", "--data-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    lines = records(first)
    assert len(lines) == 2
    assert lines[0].startswith("mailspec-rsa._domainkey.example.test.\t")
    assert lines[1].startswith("mailspec-ed25519._domainkey.example.test.\t")
    assert "k=rsa; p=" in first and "k=ed25519; p=" in first
    # Every record reads back as zone data (long RSA values split into 255-octet strings).
    assert len(parse_zone("\n".join(lines))) == 2
    assert main(["dkim", "keygen", "example.test", "--data-dir", str(tmp_path)]) == 0
    again = capsys.readouterr().out
    assert "kept the existing" in again and records(again) == lines


def test_keygen_selector_and_algorithm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["dkim", "keygen", "example.test", "--selector", "2026a"]
    assert main([*args, "--algorithm", "ed25519-sha256", "--data-dir", str(tmp_path)]) == 0
    lines = records(capsys.readouterr().out)
    assert len(lines) == 1 and lines[0].startswith("2026a-ed25519._domainkey.example.test.")
    assert (tmp_path / "dkim" / "example.test" / "2026a.ed25519.key").exists()


def test_keygen_refuses_a_bad_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dkim", "keygen", "../etc", "--data-dir", str(tmp_path)]) == 2
    assert "not a domain" in capsys.readouterr().err


def test_dns_records_lists_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", "records", "example.test", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    zone = parse_zone("\n".join(records(out)))
    have = {(r.name, r.rtype) for r in zone}
    for name, rtype in [
        ("example.test", "MX"),
        ("example.test", "TXT"),
        ("mailspec-rsa._domainkey.example.test", "TXT"),
        ("mailspec-ed25519._domainkey.example.test", "TXT"),
        ("_dmarc.example.test", "TXT"),
        ("mail.example.test", "TXT"),  # SPF of the SRS domain (server.hostname by default)
        ("mailspec-rsa._domainkey.mail.example.test", "TXT"),  # the ARC sealing key
    ]:
        assert (name, rtype) in have, (name, rtype)
    assert "v=spf1 mx -all" in out and "v=DMARC1; p=reject" in out
    assert "v=spf1 a -all" in out
    # Nothing serves an MTA-STS policy or reads TLS reports: no record may promise them.
    assert not {n for n, _ in have} & {"_mta-sts.example.test", "_smtp._tls.example.test"}
    assert "STSv1" not in out and "TLSRPT" not in out


def test_auth_check_prints_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: a@bank.example\r\nSubject: x\r\n\r\nhi\r\n")
    with FakeDNS() as dns:
        dns.spf("bank.example", "v=spf1 ip4:192.0.2.1 -all")
        dns.dmarc("bank.example", "v=DMARC1; p=reject")
        code = main(
            [
                "auth", "check", str(msg), "--client-ip", "198.51.100.1", "--helo", "h.example",
                "--mail-from", "a@bank.example", "--nameserver", dns.nameserver,
                "--data-dir", str(tmp_path),
            ]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "spf=fail" in out and "dkim=none" in out
    assert "dmarc=fail header.from=bank.example policy=reject disposition=reject" in out
    assert "Authentication-Results: mail.example.test;" in out
