"""Target descriptions: endpoints, the TOML format, capabilities and the reference target."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from conformance import target as target_mod
from conformance.target import Endpoint, ReferenceTarget, TargetError, load_target

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
    assert t.capabilities == frozenset()
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
    ],
)
def test_bad_target_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        load_target(write(tmp_path, text), environ={})


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


class FakeServer:
    """Stands in for reference.testing.ReferenceServer: records what the target does."""

    instances: list[FakeServer] = []

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[str, ...]] = []
        self.hostname = kwargs["hostname"]
        self.cafile = data_dir / "cert.pem"
        self.stopped = False
        FakeServer.instances.append(self)

    def start(self) -> FakeServer:
        return self

    def stop(self) -> None:
        self.stopped = True

    @property
    def endpoints(self) -> dict[str, str]:
        return {
            "mx": "smtp://127.0.0.1:1025",
            "submission": "smtp://127.0.0.1:1587",
            "imaps": "imaps://127.0.0.1:1993",
        }

    def add_domain(self, name: str) -> None:
        self.calls.append(("domain", name))

    def add_user(self, address: str, password: str) -> None:
        self.calls.append(("user", address, password))


def test_reference_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A stand-in module, so this test does not depend on the reference's state.
    fake_module = types.ModuleType("reference.testing")
    fake_module.ReferenceServer = FakeServer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reference.testing", fake_module)
    monkeypatch.setattr(target_mod, "fakes_available", lambda: False)
    provider = ReferenceTarget()
    assert provider.capabilities == {"clock", "admin", "proxy-protocol"}
    assert provider.describe() == {
        "name": "reference",
        "kind": "reference",
        "capabilities": ["admin", "clock", "proxy-protocol"],
    }
    t = provider.start(tmp_path)
    assert provider.start(tmp_path) is t
    (server,) = FakeServer.instances[-1:]
    assert server.kwargs["nameservers"] == []
    assert server.kwargs["overrides"]["listen.mx_proxy_from"] == ["127.0.0.0/8"]
    assert set(t.endpoints) == {"smtp", "submission", "imaps"}
    assert t.endpoint("smtp").port == 1025
    assert [c[:2] for c in server.calls] == [
        ("domain", "example.test"),
        ("user", "alice@example.test"),
        ("user", "bob@example.test"),
    ]
    alice, bob = t.accounts
    assert alice.password != bob.password and len(alice.password) >= 16
    assert t.clock is not None and t.admin is server
    assert t.tls.cafile == tmp_path / "cert.pem"
    assert provider.describe()["accounts"] == ["alice@example.test", "bob@example.test"]
    provider.stop()
    assert server.stopped


class FakeInternet:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.nameserver = "127.0.0.1:5353"
        self.smtp_port = 2500
        self.smarthost = types.SimpleNamespace(host="127.0.2.4")
        self.stopped = False

    def start(self) -> FakeInternet:
        return self

    def stop(self) -> None:
        self.stopped = True


def test_reference_target_with_the_fake_internet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server_module = types.ModuleType("reference.testing")
    server_module.ReferenceServer = FakeServer  # type: ignore[attr-defined]
    internet_module = types.ModuleType("fakes.internet")
    internet_module.FakeInternet = FakeInternet  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reference.testing", server_module)
    monkeypatch.setitem(sys.modules, "fakes.internet", internet_module)
    monkeypatch.setattr(target_mod, "fakes_available", lambda: True)
    provider = ReferenceTarget(overrides={"relay.port": 2626})
    assert "fake-dns" in provider.capabilities
    t = provider.start(tmp_path)
    fake = t.fake_internet
    assert isinstance(fake, FakeInternet)
    assert fake.kwargs["clock"] is t.clock
    server = FakeServer.instances[-1]
    assert server.kwargs["nameservers"] == ["127.0.0.1:5353"]
    overrides = server.kwargs["overrides"]
    assert overrides["relay.port"] == 2626  # the caller's override wins over the wiring
    assert overrides["relay.smarthost"] == "127.0.2.4:2500"
    assert overrides["relay.source_addresses"] == ["127.0.1.0/24"]
    provider.stop()
    assert fake.stopped and server.stopped
