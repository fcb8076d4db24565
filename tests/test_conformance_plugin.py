"""The mailspec pytest plugin end to end: small suites run with pytester against a stand-in."""

from __future__ import annotations

import asyncio
import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from conformance import cli
from conformance.target import ReferenceTarget

pytest_plugins = ["pytester"]

STANDIN_HOST = "standin.example.test"
# pytester restores sys.modules after each in-process run, so a plugin that imports lazily
# (hypothesis's summary) re-imports every time: block the ones these suites do not need.
INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust")


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


class StandIn:
    """An aiosmtpd server on a loopback port, in its own thread: a target to aim suites at."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> StandIn:
        self._thread.start()

        async def serve() -> asyncio.Server:
            return await self.loop.create_server(
                lambda: SMTP(_Sink(), hostname=STANDIN_HOST), "127.0.0.1", 0
            )

        self.server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    server = StandIn().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


@pytest.fixture
def target_file(pytester: pytest.Pytester, standin: StandIn) -> Path:
    path = pytester.path / "standin.toml"
    path.write_text(
        f"""
name = "standin"
domain = "example.test"
hostname = "{STANDIN_HOST}"
timeout = 3
capabilities = ["proxy-protocol"]
features = ["rate-limit", "dnsbl", "helo-required"]

[endpoints]
smtp = "smtp://127.0.0.1:{standin.port}"

[accounts.primary]
address = "alice@example.test"
password = "s3cret-never-in-reports"
"""
    )
    return path


def run(pytester: pytest.Pytester, target_file: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--mailspec-target", str(target_file), *INNER, *args)


def load_json(pytester: pytest.Pytester, where: str = "reports/conformance") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / where / "conformance.json").read_text())
    return data


def by_title(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["title"]: r for r in report["requirements"]}


MIXED_SUITE = """
import pytest
from conformance.requirements import needs, requirement

@requirement("RFC5321", "4.1.1.9", "MUST", "NOOP gets 250")
def test_noop(smtp):
    smtp.session().noop().expect(250, doing="NOOP")

@requirement("RFC5321", "4.2.4", "MUST", "an unknown command gets 502")
def test_wrong_expectation(smtp):
    smtp.session().command("QZVT").expect(502, doing="unknown command")

@requirement("RFC5321", "4.5.3.2", "MUST", "timeouts are honoured", needs=("clock",))
def test_needs_clock(target):
    raise AssertionError("must not run")

@requirement("PLATFORM", "outbound.ratelimit", "MUST", "60 recipients per 5 minutes")
def test_uses_admin_fixture(admin):
    raise AssertionError("must not run")

@requirement("RFC5321", "4.1.1.10", "MUST", "QUIT gets 221")
def test_skipped_for_another_reason():
    pytest.skip("not written yet")

@requirement("RFC5321", "4.1.1.1", "MUST", "HELO gets 250")
def test_helo(smtp):
    smtp().helo().expect(250, doing="HELO")

@requirement("RFC5321", "4.1.1.1", "MUST", "HELO gets 250")
@needs("fake-dns")
def test_helo_needs_dns(smtp):
    raise AssertionError("must not run")

@requirement("RFC3207", "4", "MUST", "STARTTLS is offered on submission")
def test_missing_endpoint(smtp):
    smtp("submission")

def test_not_a_requirement():
    pass
"""


def test_statuses_summary_and_json_shape(pytester: pytest.Pytester, target_file: Path) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester, target_file)
    result.assert_outcomes(passed=3, failed=1, skipped=5)
    report = load_json(pytester)

    assert set(report) == {
        "target",
        "summary",
        "sections",
        "not_applicable_reasons",
        "protocols",
        "requirements",
    }
    # Each reason with the number of requirements it made not applicable.
    assert report["not_applicable_reasons"] == {
        "target 'standin' has no 'submission' endpoint": 1,
        "target 'standin' lacks capability 'admin'": 1,
        "target 'standin' lacks capability 'clock'": 1,
    }
    assert report["summary"] == {
        "pass": 2,
        "fail": 1,
        "not_applicable": 3,
        "skipped": 1,
        "deviation": 0,
        "not_claimed": 0,
        "should_fail": 0,
    }
    rows = by_title(report)
    assert set(rows["NOOP gets 250"]) == {
        "id",
        "source",
        "clause",
        "level",
        "title",
        "status",
        "tests",
        "detail",
    }
    assert rows["NOOP gets 250"] == {
        "id": "RFC5321-4.1.1.9",
        "source": "RFC5321",
        "clause": "4.1.1.9",
        "level": "MUST",
        "title": "NOOP gets 250",
        "status": "pass",
        "tests": ["test_mixed.py::test_noop"],
        "detail": "",
    }
    wrong = rows["an unknown command gets 502"]
    assert wrong["status"] == "fail"
    assert wrong["detail"].startswith("unknown command: expected 502, got 500")

    clock = rows["timeouts are honoured"]
    assert clock["status"] == "not_applicable"
    assert clock["detail"] == "target 'standin' lacks capability 'clock'"
    assert rows["60 recipients per 5 minutes"]["status"] == "not_applicable"
    assert "'admin'" in rows["60 recipients per 5 minutes"]["detail"]
    missing = rows["STARTTLS is offered on submission"]
    assert missing["status"] == "not_applicable"
    assert missing["detail"] == "target 'standin' has no 'submission' endpoint"

    skipped = rows["QUIT gets 221"]
    assert skipped["status"] == "skipped"
    assert skipped["detail"] == "not written yet"

    # One requirement, two tests: one passed, one not applicable -> pass, with the reason.
    helo = rows["HELO gets 250"]
    assert helo["status"] == "pass"
    assert helo["tests"] == ["test_mixed.py::test_helo", "test_mixed.py::test_helo_needs_dns"]
    assert (
        helo["detail"]
        == "1 of 2 tests not applicable: target 'standin' lacks capability 'fake-dns'"
    )

    # Sorted by source (RFCs by number, then the platform), then clause numerically.
    order = [(r["source"], r["clause"]) for r in report["requirements"]]
    assert order == [
        ("RFC3207", "4"),
        ("RFC5321", "4.1.1.1"),
        ("RFC5321", "4.1.1.9"),
        ("RFC5321", "4.1.1.10"),
        ("RFC5321", "4.2.4"),
        ("RFC5321", "4.5.3.2"),
        ("PLATFORM", "outbound.ratelimit"),
    ]
    assert report["target"]["name"] == "standin"
    # "antivirus" is part of every described target: a platform must scan.
    assert report["target"]["capabilities"] == ["antivirus", "proxy-protocol"]
    text = (pytester.path / "reports/conformance/conformance.json").read_text()
    assert "s3cret" not in text
    result.stdout.fnmatch_lines(["*mailspec conformance*", "*7 requirements: 2 pass, 1 fail*"])


def test_known_deviations_are_reported_not_failed(
    pytester: pytest.Pytester, target_file: Path
) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    target_file.write_text(
        target_file.read_text() + '\n[expect]\nknown_deviations = ["RFC5321-4.2.4"]\n'
    )
    result = run(pytester, target_file, "-k", "wrong_expectation or noop")
    # A known deviation is an expected failure to pytest: the run passes.
    assert result.ret == 0
    result.assert_outcomes(passed=1, xfailed=1)
    report = load_json(pytester)
    row = by_title(report)["an unknown command gets 502"]
    assert row["status"] == "deviation"
    assert row["detail"].startswith(
        "RFC5321-4.2.4 [real deviation]: unknown command: expected 502, got 500"
    )
    assert report["summary"]["deviation"] == 1
    assert report["target"]["known_deviations"] == ["RFC5321-4.2.4"]
    result.stdout.fnmatch_lines(["*deviate*4.2.4*", "*1 known deviation*"])

    target_file.write_text(target_file.read_text().replace("RFC5321-4.2.4", "RFC5321-4.1.1.9"))
    result = run(pytester, target_file, "-k", "noop")
    result.stdout.fnmatch_lines(["*listed as known deviations but passing: RFC5321-4.1.1.9"])


def test_each_failure_is_printed_with_its_class(
    pytester: pytest.Pytester, target_file: Path
) -> None:
    # A reviewed deviations file classifies a failure and says why; one it does not explain
    # is printed as unexplained and fails the run.
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    deviations = target_file.with_name("deviations.toml")
    deviations.write_text(
        """
[[deviation]]
id = "RFC5321-4.2.4"
class = "configuration"
reason = "this stand-in answers 500 on purpose"
reference = "https://example.test/why"
"""
    )
    target_file.write_text(target_file.read_text() + '\n[expect]\ndeviations = "deviations.toml"\n')
    result = run(pytester, target_file, "-k", "wrong_expectation")
    report = load_json(pytester)
    assert report["target"]["deviations"]["RFC5321-4.2.4"]["class"] == "configuration"
    result.stdout.fnmatch_lines(
        [
            "failures by classification: 1 configuration*",
            "  configuration   RFC5321-4.2.4: an unknown command gets 502",
            "      why: this stand-in answers 500 on purpose",
            "      see: https://example.test/why",
            "      observed: RFC5321-4.2.4 ?configuration?: unknown command*",
        ]
    )
    assert result.ret == 0

    deviations.write_text(deviations.read_text().replace("RFC5321-4.2.4", "RFC5321-4.1.1.9"))
    result = run(pytester, target_file, "-k", "wrong_expectation")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "failures by classification: 1 UNEXPLAINED",
            "  UNEXPLAINED     RFC5321-4.2.4: an unknown command gets 502",
            "      observed: unknown command: expected 502, got 500*",
        ]
    )


def test_markdown_groups_by_source(pytester: pytest.Pytester, target_file: Path) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    run(pytester, target_file)
    md = (pytester.path / "reports/conformance/conformance.md").read_text()
    lines = md.splitlines()
    headings = [ln for ln in lines if ln.startswith("## ")]
    assert headings == ["## RFC 3207", "## RFC 5321", "## Platform policies"]
    assert "**7 requirements: 2 pass, 1 fail, 3 not applicable, 1 skipped**" in lines
    row = next(ln for ln in lines if "an unknown command gets 502" in ln)
    assert row.startswith("| 4.2.4 | MUST | an unknown command gets 502 | **FAIL** |")
    rfc5321 = lines[lines.index("## RFC 5321") : lines.index("## Platform policies")]
    clauses = [ln.split("|")[1].strip() for ln in rfc5321 if ln.startswith("| 4")]
    assert clauses == ["4.1.1.1", "4.1.1.9", "4.1.1.10", "4.2.4", "4.5.3.2"]
    assert "s3cret" not in md


def test_junit_xml(pytester: pytest.Pytester, target_file: Path) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    run(pytester, target_file)
    root = ET.parse(pytester.path / "reports/conformance/junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("8", "1", "5")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert "test_not_a_requirement" not in cases
    fail = cases["test_wrong_expectation"].find("failure")
    assert fail is not None and "expected 502" in (fail.get("message") or "")
    na = cases["test_needs_clock"].find("skipped")
    assert na is not None and na.get("type") == "not_applicable"
    prop = cases["test_noop"].find("properties/property")
    assert prop is not None and prop.get("value") == "RFC5321-4.1.1.9"


def test_failure_shows_the_smtp_transcript(pytester: pytest.Pytester, target_file: Path) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester, target_file, "-k", "wrong_expectation")
    result.stdout.fnmatch_lines(["*smtp transcript*", "C: QZVT", "S: 500 *"])


def test_no_report_and_no_target_without_requirement_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: ReferenceTarget, workdir: Path) -> Any:
        raise AssertionError("the reference must not start")

    monkeypatch.setattr(ReferenceTarget, "start", refuse)
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert "mailspec conformance" not in result.stdout.str()


def test_reference_starts_only_when_a_test_needs_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: ReferenceTarget, workdir: Path) -> Any:
        raise AssertionError("the reference must not start")

    monkeypatch.setattr(ReferenceTarget, "start", refuse)
    pytester.makepyfile(
        test_pure="""
from conformance.requirements import requirement

@requirement("RFC5321", "4.5.2", "MUST", "dot-stuffing is removed")
def test_no_target_needed():
    pass
"""
    )
    result = pytester.runpytest(*INNER, "--mailspec-report", "out")
    result.assert_outcomes(passed=1)
    report = load_json(pytester, "out")
    assert report["target"]["kind"] == "reference"
    assert report["summary"]["pass"] == 1


def test_unwritable_report_dir_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pure=ID_SUITE)
    (pytester.path / "blocked").write_text("a file where the directory should be")
    result = pytester.runpytest(*INNER, "--mailspec-report", "blocked/sub")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*cannot write the report to *blocked/sub*"])


def test_reference_start_failure_fails_its_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ReferenceTarget, workdir: Path) -> Any:
        raise RuntimeError("listener failed")

    monkeypatch.setattr(ReferenceTarget, "start", broken)
    pytester.makepyfile(
        test_ref="""
from conformance.requirements import requirement

@requirement("RFC5321", "4.2", "MUST", "greeting is 220")
def test_a(target):
    pass

@requirement("RFC5321", "4.2", "MUST", "greeting is 220")
def test_b(smtp):
    pass
"""
    )
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(errors=2)
    row = load_json(pytester)["requirements"][0]
    assert row["status"] == "fail"
    assert row["detail"] == "error in setup: RuntimeError: listener failed"


ID_SUITE = """
from conformance.requirements import requirement

@requirement("RFC5321", "4.1.4", "MUST", "RCPT before MAIL gets 503")
def test_rcpt_first():
    pass

@requirement("RFC5321", "4.1.4", "MUST", "EHLO resets the transaction")
def test_ehlo_resets():
    pass

@requirement("RFC5321", "4.1.4", "MUST", "EHLO   resets the transaction")
def test_ehlo_resets_again():
    pass

@requirement("RFC5321", "4.5.2", "MUST", "dot-stuffing is removed")
class TestDots:
    def test_one(self):
        pass

    def test_two(self):
        pass
"""


def test_requirement_ids_are_unique_and_stable(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ids=ID_SUITE)
    pytester.runpytest(*INNER).assert_outcomes(passed=5)
    full = {r["title"]: r for r in load_json(pytester)["requirements"]}
    assert len(full) == 3
    assert full["dot-stuffing is removed"]["id"] == "RFC5321-4.5.2"
    assert full["dot-stuffing is removed"]["tests"] == [
        "test_ids.py::TestDots::test_one",
        "test_ids.py::TestDots::test_two",
    ]
    rcpt = full["RCPT before MAIL gets 503"]["id"]
    ehlo = full["EHLO resets the transaction"]["id"]
    assert rcpt != ehlo
    assert rcpt.startswith("RFC5321-4.1.4-") and ehlo.startswith("RFC5321-4.1.4-")
    # Whitespace in a title does not make another requirement.
    assert len(full["EHLO resets the transaction"]["tests"]) == 2

    # Selecting fewer tests does not change the ids.
    pytester.runpytest(*INNER, "-k", "rcpt_first").assert_outcomes(passed=1)
    (only,) = load_json(pytester)["requirements"]
    assert only["id"] == rcpt


def test_conflicting_levels_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_conflict="""
from conformance.requirements import requirement

@requirement("RFC5321", "4.1.4", "MUST", "RCPT before MAIL gets 503")
def test_a():
    pass

@requirement("RFC5321", "4.1.4", "SHOULD", "RCPT before MAIL gets 503")
def test_b():
    pass
"""
    )
    result = pytester.runpytest(*INNER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*is SHOULD here but MUST elsewhere*"])


def test_bad_requirement_fails_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
from conformance.requirements import requirement

@requirement("RFC5321", "4.1.4", "MUSTN'T", "nonsense")
def test_a():
    pass
"""
    )
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*expected MUST, SHOULD or MAY*"])
    assert not (pytester.path / "reports").exists()


def test_hand_made_marks_are_checked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_hand="""
import pytest

@pytest.mark.requirement("RFC5321", "4.1.4")
def test_a():
    pass
"""
    )
    result = pytester.runpytest(*INNER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*requirement mark without level*"])


def test_bad_target_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    bad = pytester.path / "bad.toml"
    bad.write_text('domain = "example.test"\n[endpoints]\nsmtp = "http://x"\n')
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    result = pytester.runpytest(*INNER, "--mailspec-target", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad.toml: endpoints.smtp: unknown scheme*"])


def test_proxied_connection_needs_the_capability(
    pytester: pytest.Pytester, target_file: Path
) -> None:
    target_file.write_text(target_file.read_text().replace('["proxy-protocol"]', "[]"))
    pytester.makepyfile(
        test_proxy="""
from conformance.requirements import requirement

@requirement("PLATFORM", "inbound.dnsbl", "MUST", "listed clients are refused")
def test_proxy(smtp):
    smtp.proxied("192.0.2.1")
"""
    )
    run(pytester, target_file).assert_outcomes(skipped=1)
    (row,) = load_json(pytester)["requirements"]
    assert row["status"] == "not_applicable"
    assert "'proxy-protocol'" in row["detail"]


def test_the_conformance_suite_passes_against_aiosmtpd(
    pytester: pytest.Pytester, target_file: Path
) -> None:
    # aiosmtpd follows RFC 5321 closely for these basics: a sanity check of the tests.
    result = run(pytester, target_file, "--pyargs", "conformance.tests", "-k", "smtp_basics")
    result.assert_outcomes(passed=21)
    report = load_json(pytester)
    assert report["summary"]["fail"] == 0
    assert {r["status"] for r in report["requirements"]} == {"pass"}


def test_cli_arguments_reach_pytest(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="mailspec")
    sub = parser.add_subparsers()
    cli.register(sub, [])
    args = parser.parse_args(
        ["check", "--target", "t.toml", "--report", "out", "-k", "noop", "--exitfirst"]
    )
    assert args.func is cli.run
    argv = cli.pytest_args(args)
    assert argv[:2] == ["--pyargs", "conformance.tests"]
    for pair in (["--mailspec-target", "t.toml"], ["--mailspec-report", "out"], ["-k", "noop"]):
        i = argv.index(pair[0])
        assert argv[i : i + 2] == pair
    assert "-x" in argv and "--mailspec-matrix" in argv
    bare = cli.pytest_args(parser.parse_args(["check"]))
    assert "--mailspec-target" not in bare and "-k" not in bare


def test_cli_run_prints_the_matrix(pytester: pytest.Pytester, target_file: Path) -> None:
    import argparse

    args = argparse.Namespace(target=str(target_file), report="rep", keyword="noop_answers")
    result = pytester.runpytest(*cli.pytest_args(args), "-p", "no:hypothesispytest")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["RFC 5321", "  pass    MUST   4.1.1.9 *NOOP gets 250", "*1 requirement: 1 pass*"]
    )
    assert (pytester.path / "rep" / "conformance.md").exists()


def test_default_target_is_the_reference(pytester: pytest.Pytester) -> None:
    # The one test here that starts the real reference (and the fake internet): the
    # fixtures must reach it, and a run must stop it again.
    pytester.makepyfile(
        test_ref="""
from conformance.requirements import requirement

R = ("PLATFORM", "suite.fixtures", "MUST", "the fixtures reach the reference")

@requirement(*R)
def test_smtp(smtp, target):
    assert target.kind == "reference" and target.domain == "example.test"
    assert [a.address for a in target.accounts] == ["alice@example.test", "bob@example.test"]
    smtp.session().quit().expect(221, doing="QUIT")
    # STARTTLS on submission and implicit TLS on submissions, verified against the cafile.
    client = smtp.session("submission", tls=True)
    assert client.tls_active and "AUTH" in client.extensions
    assert smtp("submissions").greeting.code == 220

@requirement(*R)
def test_admin_and_clock(admin, clock, target):
    admin.add_domain("other.test")
    admin.add_user("carol@other.test", "pw-carol-123456")
    before = target.clock.now()
    clock.advance(3600)
    assert target.clock.now() == before + 3600

@requirement(*R)
def test_fake_dns(fake_internet, fake_dns):
    assert fake_dns is fake_internet.dns
"""
    )
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=3)
    report = load_json(pytester)
    assert report["target"]["kind"] == "reference"
    assert set(report["target"]["endpoints"]) >= {"smtp", "submission", "imap", "pop3"}
    assert report["summary"]["pass"] == 1


# -- a target that does not answer: one line per endpoint, nothing run ----------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoints_stop_the_run_before_any_test(
    pytester: pytest.Pytester, target_file: Path, standin: StandIn
) -> None:
    # The stand-in answers on smtp; imap and pop3 point at closed loopback ports.
    imap, pop3 = _closed_port(), _closed_port()
    text = target_file.read_text().replace(
        "[endpoints]\n",
        f'[endpoints]\nimap = "imap://127.0.0.1:{imap}"\npop3 = "pop3://127.0.0.1:{pop3}"\n',
    )
    target_file.write_text(text)
    result = run(pytester, target_file, "--pyargs", "conformance.tests")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.lines
    assert err[:3] == [
        f"ERROR: --mailspec-target {target_file}: 2 endpoints cannot be used, no test was run:",
        f"imap 127.0.0.1:{imap} unreachable: connection refused",
        f"pop3 127.0.0.1:{pop3} unreachable: connection refused",
    ]
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "smtp 127.0.0.1" not in out
    assert "test session starts" not in out  # stopped before the header, let alone a test
    assert not (pytester.path / "reports").exists()


def test_listing_the_suite_does_not_probe(pytester: pytest.Pytester) -> None:
    dead = pytester.path / "dead.toml"
    dead.write_text(f'domain = "d.test"\n[endpoints]\nsmtp = "smtp://127.0.0.1:{_closed_port()}"\n')
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    result = pytester.runpytest(*INNER, "--mailspec-target", str(dead), "--collect-only")
    assert result.ret == 0


def test_a_reachable_target_runs(pytester: pytest.Pytester, target_file: Path) -> None:
    result = run(
        pytester, target_file, "--pyargs", "conformance.tests", "-k", "noop and not control"
    )
    assert result.ret == 0
    assert load_json(pytester)["summary"]["pass"] >= 1


# -- no clamd here: the virus requirements are not applicable, and the run says so first ------


VIRUS_SUITE = """
from conformance.requirements import requirement

@requirement("PLATFORM", "inbound.virus", "MUST", "viruses are refused", needs=("antivirus",))
def test_virus():
    pass

@requirement("RFC5321", "4.5.2", "MUST", "dot-stuffing is removed")
def test_other():
    pass
"""


def test_without_clamd_virus_rows_are_not_applicable_with_the_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A PATH without clamd, and no fallback either: as on a machine without the package.
    monkeypatch.setenv("MAILSPEC_CLAMD", "none")
    pytester.makepyfile(test_virus=VIRUS_SUITE)
    result = pytester.runpytest(*INNER, "-v")
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1)
    lines = result.stdout.lines
    notice = next(i for i, line in enumerate(lines) if line.startswith("mailspec: "))
    first_test = next(i for i, line in enumerate(lines) if "test_virus.py::" in line)
    assert notice < first_test, "said before the first test"
    assert "'antivirus'" in lines[notice] and "MAILSPEC_CLAMD=none" in lines[notice]
    assert "1 test needing it will be reported not applicable" in lines[notice]
    row = by_title(load_json(pytester))["viruses are refused"]
    assert row["status"] == "not_applicable"
    assert row["detail"] == (
        "target 'reference' lacks capability 'antivirus': MAILSPEC_CLAMD=none: running without "
        "clamd"
    )
    assert load_json(pytester)["target"]["capabilities_missing"] == {
        "antivirus": "MAILSPEC_CLAMD=none: running without clamd"
    }


def test_with_clamd_nothing_is_said(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILSPEC_CLAMD", raising=False)
    pytester.makepyfile(test_virus=VIRUS_SUITE)
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=2)
    assert "mailspec: " not in result.stdout.str()


SHOULD_SUITE = """
from conformance.requirements import requirement

@requirement("RFC5321", "4.2.4", "SHOULD", "an unknown command gets 502")
def test_should(smtp):
    smtp.session().command("QZVT").expect(502, doing="unknown command")

@requirement("RFC5321", "4.2.4", "SHOULD", "an unknown command gets 502")
@requirement("RFC5321", "4.1.1.9", "MUST", "NOOP answers 502, on purpose wrong")
def test_must_and_should(smtp):
    smtp.session().command("NOOP").expect(502, doing="NOOP")
"""


def test_a_failed_should_is_a_warning_not_a_must_failure(
    pytester: pytest.Pytester, target_file: Path
) -> None:
    # Before: a SHOULD not met was a "fail" like any MUST, and turned the run red.
    pytester.makepyfile(test_should=SHOULD_SUITE)
    result = run(pytester, target_file, "-k", "test_should and not must")
    assert result.ret == 0
    report = load_json(pytester)
    (row,) = report["requirements"]
    assert row["status"] == "should_fail", row
    assert row["detail"].startswith("unknown command: expected 502, got 500"), row
    assert report["summary"]["fail"] == 0 and report["summary"]["should_fail"] == 1
    result.stdout.fnmatch_lines(["*SHOULD*an unknown command gets 502*", "*1 SHOULD not met*"])
    assert (
        "| **SHOULD not met** |"
        in (pytester.path / "reports/conformance/conformance.md").read_text()
    )
    # A test that also checks a MUST fails as a MUST: every requirement it carries fails.
    result = run(pytester, target_file, "-k", "test_must_and_should")
    assert result.ret == 1
    statuses = {r["level"]: r["status"] for r in load_json(pytester)["requirements"]}
    assert statuses == {"MUST": "fail", "SHOULD": "fail"}
