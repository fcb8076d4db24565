"""Target descriptions: endpoints, the TOML format, capabilities and the reference target."""

from __future__ import annotations

import shlex
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conformance import target as target_mod
from conformance.target import (
    Endpoint,
    PropertyBudget,
    ReferenceTarget,
    Target,
    TargetError,
    load_deviations,
    load_target,
    missing_reason,
)
from reference.testing import ClamdNotFound, find_clamd

EXAMPLE = Path(target_mod.__file__).parent / "targets" / "example-postfix.toml"


@pytest.mark.parametrize(
    ("role", "url", "expected"),
    [
        ("smtp", "smtp://mx.example.test", ("smtp", "mx.example.test", 25, False)),
        ("submission", "smtp://mx.example.test", ("smtp", "mx.example.test", 587, False)),
        ("submissions", "smtps://192.0.2.1", ("smtps", "192.0.2.1", 465, True)),
        ("imap", "imap://127.0.0.1:1143", ("imap", "127.0.0.1", 1143, False)),
        ("imaps", "IMAPS://[::1]", ("imaps", "::1", 993, True)),
        ("pop3", "pop3://h", ("pop3", "h", 110, False)),
        ("pop3s", "pop3s://h:2995/", ("pop3s", "h", 2995, True)),
    ],
)
def test_endpoint_urls(role: str, url: str, expected: tuple[str, str, int, bool]) -> None:
    ep = Endpoint.parse(role, url)
    assert (ep.scheme, ep.host, ep.port, ep.implicit_tls) == expected
    assert Endpoint.parse(role, ep.url) == ep


@pytest.mark.parametrize(
    ("role", "url", "message"),
    [
        ("smtp", "http://h", "unknown scheme"),
        ("imap", "smtp://h", "expected an imap URL"),
        ("lmtp", "smtp://h", "unknown endpoint"),
        ("smtp", "smtp://h:99999", "bad port"),
        ("smtp", "smtp://h/path", "expected scheme://host:port"),
        ("smtp", "smtp://user@h", "expected scheme://host:port"),
        ("smtp", "smtp://", "expected scheme://host:port"),
    ],
)
def test_bad_endpoint_urls(role: str, url: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        Endpoint.parse(role, url)


def test_example_file_loads() -> None:
    env = {"MAILSPEC_PRIMARY_PASSWORD": "a", "MAILSPEC_SECONDARY_PASSWORD": "b"}
    provider = load_target(EXAMPLE, environ=env)
    t = provider.target
    assert t.name == "postfix-staging"
    assert set(t.endpoints) == {
        "smtp",
        "submission",
        "submissions",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
    }
    assert [a.address for a in t.accounts] == [
        "conformance-a@example.com",
        "conformance-b@example.com",
    ]
    assert t.accounts[0].password == "a"
    assert "a'" not in repr(t.accounts[0])
    # Listed as none, but a platform must scan: the virus requirements run (and fail, or
    # are listed as known deviations) instead of becoming "not applicable".
    assert t.capabilities == frozenset({"antivirus"})
    assert t.tls.server_name == "mx1.example.com"
    assert provider.describe()["endpoints"]["submissions"] == "smtps://192.0.2.10:465"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text('domain = "example.test"\n' + text)
    return path


SMTP = '[endpoints]\nsmtp = "smtp://127.0.0.1:2525"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "endpoints: expected a table"),
        ("colour = 1\n" + SMTP, "colour: unknown key"),
        ('capabilities = ["time"]\n' + SMTP, "unknown 'time'"),
        ('capabilities = ["clock"]\n' + SMTP, r"needs a \[clock\] table"),
        (SMTP + '[clock]\nadvance = ["x"]\n', "'clock' is not in capabilities"),
        ('capabilities = ["admin"]\n' + SMTP + "[admin]\nadd_domain = []\n", "add_domain"),
        (SMTP + '[accounts.primary]\naddress = "a@b"\n', "exactly one of password"),
        (SMTP + '[accounts.primary]\naddress = "ab"\npassword = "p"\n', "local@domain"),
        (SMTP + '[accounts.primary]\naddress = "a@b"\npassword_env = "NOPE_X"\n', "NOPE_X"),
        (SMTP + '[accounts.secondary]\naddress = "a@b"\npassword = "p"\n', "without accounts"),
        (SMTP + '[tls]\ncafile = "missing.pem"\n', "no such file"),
        ("timeout = -1\n" + SMTP, "positive number"),
        ("endpoints = 3\n", "expected a table"),
        (SMTP + "[expect]\nknown_deviations = [1]\n", "list of requirement ids"),
        (SMTP + '[expect]\nknown = ["x"]\n', "expect.known: unknown key"),
        (SMTP + "[budget]\nseconds = 0\n", "budget.seconds: expected a positive"),
        (SMTP + "[budget]\nexamples = 1.5\n", "budget.examples: expected a positive whole"),
        (SMTP + "[budget]\nminutes = 1\n", "budget.minutes: unknown key"),
        ('capabilities = ["restart"]\n' + SMTP, "granted by a restart command"),
        ("restart = 1\n" + SMTP, "restart: expected a non-empty string"),
    ],
)
def test_bad_target_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        load_target(write(tmp_path, text), environ={})


def test_the_peers_deviations_file_loads() -> None:
    # Every entry of the reviewed file has a class, a reason and a reference.
    path = Path(__file__).parent.parent / "conformance/peers/deviations.toml"
    deviations = load_deviations(path)
    assert deviations
    assert all(d.reason and d.reference for d in deviations.values())


DEV = '[[deviation]]\nid = "X"\nclass = "deviation"\nreason = "r"\nreference = "u"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEV.replace('"deviation"', '"bug"'), "class: unknown 'bug'"),
        (DEV.replace('reference = "u"', ""), "reference"),
        ('[[deviation]]\nid = "X"\nclass = "deviation"\n', "reason"),
        (DEV + "why = 1\n", "why: unknown key"),
        (DEV * 2, "twice"),
    ],
)
def test_bad_deviations_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "d.toml").write_text(text)
    with pytest.raises(TargetError, match=message):
        load_target(write(tmp_path, SMTP + '[expect]\ndeviations = "d.toml"\n'), environ={})


def test_unparsable_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"t\.toml: "):
        load_target(write(tmp_path, "= nope"), environ={})


def test_command_admin_and_clock(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + chr(10))"
    # An argv prefix that appends the rest of its arguments to the log file.
    cmd = f"{sys.executable!r}, '-c', {script!r}, {str(log)!r}"
    path = write(
        tmp_path,
        'capabilities = ["admin", "clock"]\n'
        + SMTP
        + f"[admin]\nadd_domain = [{cmd}, 'domain', '{{domain}}']\n"
        + f"add_user = [{cmd}, 'user', '{{address}}', '{{password}}']\n"
        + f"[clock]\nadvance = [{cmd}, 'advance', '{{seconds}}']\n",
    )
    t = load_target(path, environ={}).start(tmp_path)
    assert t.admin is not None and t.clock is not None
    t.admin.add_domain("new.test")
    t.admin.add_user("x@new.test", "pw")
    t.clock.advance(86400.0)
    assert log.read_text().splitlines() == [
        "domain new.test",
        "user x@new.test pw",
        "advance 86400",
    ]


def test_failing_command_does_not_show_its_arguments(tmp_path: Path) -> None:
    py = sys.executable
    path = write(
        tmp_path,
        'capabilities = ["admin"]\n'
        + SMTP
        + f"[admin]\nadd_domain = [{py!r}, '-c', 'raise SystemExit(3)']\n"
        + f"add_user = [{py!r}, '-c', 'raise SystemExit(3)', '{{password}}']\n",
    )
    admin = load_target(path, environ={}).start(tmp_path).admin
    assert admin is not None
    with pytest.raises(RuntimeError, match="exited 3") as info:
        admin.add_user("x@new.test", "hunter2")
    assert "hunter2" not in str(info.value)


def test_restart_command_runs_then_waits_for_the_endpoints(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        script = tmp_path / "restart.py"
        script.write_text(f"open({str(log)!r}, 'a').write('restarted')\n")
        command = shlex.join([sys.executable, str(script)])
        text = f"restart = '{command}'\n[endpoints]\nsmtp = 'smtp://127.0.0.1:{port}'\n"
        provider = load_target(write(tmp_path, text), environ={})
        assert "restart" in provider.capabilities and not provider.capability_notes
        t = provider.start(tmp_path)
        assert t.restarter is not None
        t.restarter.restart()
    assert log.read_text() == "restarted"
    failing = load_target(write(tmp_path, "restart = 'exit 4'\n" + SMTP), environ={})
    restarter = failing.start(tmp_path).restarter
    assert restarter is not None
    with pytest.raises(RuntimeError, match="restart command exited 4"):
        restarter.restart()


def test_without_a_restart_command_the_reason_says_how(tmp_path: Path) -> None:
    provider = load_target(write(tmp_path, SMTP), environ={})
    assert "restart" not in provider.capabilities
    t = replace(provider.start(tmp_path), capability_notes=provider.capability_notes)
    with pytest.raises(pytest.skip.Exception, match=r"no restart command \(e\.g\. restart ="):
        t.require("restart")


def test_missing_endpoint_and_account_are_not_applicable(tmp_path: Path) -> None:
    t = load_target(write(tmp_path, SMTP), environ={}).start(tmp_path)
    with pytest.raises(pytest.skip.Exception, match=r"^not applicable: .*no 'imap' endpoint"):
        t.endpoint("imap")
    with pytest.raises(pytest.skip.Exception, match=r"^not applicable: .*no test account"):
        _ = t.account
    with pytest.raises(pytest.skip.Exception, match="lacks capability 'admin', 'clock'"):
        t.require("clock", "admin")
    t.require()
    with pytest.raises(KeyError):
        t.endpoint("lmtp")


def test_reference_target_runs_the_real_reference(tmp_path: Path) -> None:
    # The real reference, fake internet and clamd: nothing of ours stood in for.
    provider = ReferenceTarget(overrides={"relay.reputation_retries": 2})
    assert {"clock", "admin", "proxy-protocol", "fake-dns"} <= provider.capabilities
    assert provider.describe()["capabilities"] == sorted(provider.capabilities)
    t = provider.start(tmp_path)
    try:
        assert provider.start(tmp_path) is t
        assert {"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"} <= set(
            t.endpoints
        )
        with socket.create_connection(("127.0.0.1", t.endpoint("smtp").port), timeout=5) as c:
            assert c.recv(100).startswith(b"220 mail.example.test")
        alice, bob = t.accounts
        assert alice.address == "alice@example.test" and bob.address == "bob@example.test"
        assert alice.password != bob.password and len(alice.password) >= 16
        server = t.server
        assert server.directory.check_password(alice.address, alice.password) == alice.address
        cfg = server.config
        assert cfg.dns.nameservers == [t.fake_internet.nameserver]
        assert cfg.relay.port == t.fake_internet.smtp_port
        assert cfg.relay.source_addresses == ["127.0.1.0/24"]
        assert cfg.relay.reputation_retries == 2  # the caller's override wins over the wiring
        # A real clamd where one is installed, and the capability only then.
        assert bool(cfg.antivirus.clamd) == ("antivirus" in provider.capabilities)
        assert t.clock is server.clock and t.fake_internet.clock is server.clock
        assert provider.describe()["accounts"] == ["alice@example.test", "bob@example.test"]
    finally:
        provider.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", t.endpoint("smtp").port), timeout=1)


# -- clamd: started where installed, the reason where not -------------------------------------


def _fake_binary(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "clamd"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_clamd_is_looked_for_on_path_then_in_sbin(tmp_path: Path) -> None:
    on_path = _fake_binary(tmp_path / "bin")
    sbin = _fake_binary(tmp_path / "sbin")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_clamd({"PATH": str(tmp_path / "bin")}, fallbacks=[str(sbin)]) == str(on_path)
    assert find_clamd({"PATH": str(empty)}, fallbacks=[str(sbin)]) == str(sbin)
    # Neither on PATH nor where Debian puts it: the message names the package to install.
    with pytest.raises(ClamdNotFound) as info:
        find_clamd({"PATH": str(empty)}, fallbacks=[str(tmp_path / "nowhere" / "clamd")])
    assert "clamd is not installed" in str(info.value)
    assert "apt-get install clamav-daemon" in str(info.value)
    # MAILSPEC_CLAMD: another binary, or none at all (a machine without clamd, here).
    env = {"PATH": str(empty), "MAILSPEC_CLAMD": str(sbin)}
    assert find_clamd(env, fallbacks=[]) == str(sbin)
    with pytest.raises(ClamdNotFound, match="MAILSPEC_CLAMD=none"):
        find_clamd({"PATH": str(tmp_path / "bin"), "MAILSPEC_CLAMD": "none"})
    with pytest.raises(ClamdNotFound, match="no such executable"):
        find_clamd({"MAILSPEC_CLAMD": str(tmp_path / "missing")})


def test_reference_without_clamd_lacks_antivirus_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("MAILSPEC_CLAMD", "none")
    provider = ReferenceTarget()
    assert "antivirus" not in provider.capabilities
    assert provider.capability_notes == {"antivirus": "MAILSPEC_CLAMD=none: running without clamd"}
    assert provider.describe()["capabilities_missing"] == provider.capability_notes


def test_reference_with_clamd_grants_antivirus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSPEC_CLAMD", raising=False)
    provider = ReferenceTarget()
    assert "antivirus" in provider.capabilities
    assert provider.capability_notes == {}
    assert "capabilities_missing" not in provider.describe()


def test_missing_reason_carries_the_note() -> None:
    assert missing_reason("r", ["clock"]) == "target 'r' lacks capability 'clock'"
    notes = {"antivirus": "clamd is not installed (Debian: apt-get install clamav-daemon)"}
    assert missing_reason("r", ["antivirus", "clock"], notes) == (
        "target 'r' lacks capability 'antivirus', 'clock': clamd is not installed "
        "(Debian: apt-get install clamav-daemon)"
    )
    t = Target("r", "reference", "d.test", {}, capability_notes=notes)
    with pytest.raises(pytest.skip.Exception, match=r"^not applicable: .*apt-get install"):
        t.require("antivirus")


def test_budget_for_property_tests(tmp_path: Path) -> None:
    loaded = load_target(
        write(tmp_path, SMTP + "[budget]\nseconds = 5\nexamples = 7\n"), environ={}
    )
    assert loaded.target.budget == PropertyBudget(5.0, 7)
    assert load_target(write(tmp_path, SMTP), environ={}).target.budget == PropertyBudget(20.0)
