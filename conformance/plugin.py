"""The mailspec pytest plugin: requirements, targets, fixtures and the conformance report.

Loaded in every pytest run of an environment where mailspec is installed, so it stays
inert unless used: the target starts when a test first asks for a target fixture, and a
report is written only when tests marked with ``requirement`` ran.

Options: ``--mailspec-target FILE`` (TOML, see :mod:`conformance.target`; default: the
reference; its endpoints are probed at session start, and one that does not answer stops
the run as a usage error, one line each), ``--mailspec-report DIR`` (default
``reports/conformance``), ``--mailspec-matrix`` (print every requirement, not only failed
and skipped ones).

Fixtures: ``target`` (session; :class:`~conformance.target.Target`), ``smtp``
(:class:`SMTPConnector`: ``smtp()``, ``smtp("submission")``, ``smtp.session(tls=True)``,
``smtp.proxied("192.0.2.1")``), ``clock`` (``clock.advance(seconds)``), ``admin``
(``add_domain``, ``add_user``), ``fake_internet`` and ``fake_dns``. A fixture whose
capability the target lacks makes the test not applicable, as ``@needs`` does.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conformance.applicability import IMAP_REVISIONS, imap_revision_gap, protocol_of
from conformance.report import (
    DEVIATION_PREFIX,
    SHOULD_PREFIX,
    Outcome,
    TestResult,
    classify,
    render_matrix,
    short_message,
    sparse_protocols,
    summary_line,
    write_reports,
)
from conformance.requirements import (
    CAPABILITIES,
    NOT_CLAIMED,
    Requirement,
    assign_ids,
    feature_of,
    needed_capabilities,
    not_applicable,
)
from conformance.smtp_client import SMTPClient, proxy_v1_header
from conformance.target import (
    Admin,
    ClockControl,
    Deviation,
    ReferenceTarget,
    StaticTarget,
    Target,
    TargetError,
    TargetProvider,
    load_target,
    missing_reason,
)

__all__ = ["SMTPConnector"]

DEFAULT_REPORT_DIR = "reports/conformance"
_PROPERTY = "mailspec_requirement"


class _State:
    """Per-run state: the target (made on first need) and the results seen so far."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._provider: TargetProvider | None = None
        self._target: Target | None = None
        self.results: dict[str, TestResult] = {}
        self.report: dict[str, Any] | None = None
        self.paths: list[Path] = []
        self.write_error = ""
        path = config.getoption("mailspec_target")
        if path:
            try:
                self._provider = load_target(Path(path))
            except TargetError as e:
                raise pytest.UsageError(f"--mailspec-target: {e}") from None

    @property
    def provider(self) -> TargetProvider:
        if self._provider is None:
            self._provider = ReferenceTarget()
        return self._provider

    def start(self, workdir: Path) -> Target:
        if self._target is None:
            self._target = self.provider.start(workdir)
        return self._target

    def stop(self) -> None:
        if self._provider is not None:
            self._provider.stop()

    def report_dir(self) -> Path:
        option = self.config.getoption("mailspec_report") or DEFAULT_REPORT_DIR
        return self.config.invocation_params.dir / option

    # Hooks of this run (registered as a plugin object in pytest_configure, so nested runs
    # such as pytester's each keep their own results).

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reqs = [json.loads(str(v)) for k, v in report.user_properties if k == _PROPERTY]
        if not reqs:
            return
        result = self.results.get(report.nodeid)
        if result is None:
            result = self.results[report.nodeid] = TestResult(report.nodeid, reqs)
        result.duration += report.duration
        verdict = classify(
            report.when or "call",
            report.outcome,
            report.longrepr,
            getattr(report, "wasxfail", None),
        )
        if verdict is not None:
            outcome, detail = verdict
            longrepr = report.longreprtext if outcome is Outcome.FAIL else ""
            result.record(outcome, detail, longrepr)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Only when requirement tests ran: a unit-test run leaves no report behind. On an
        # xdist worker the controller, which sees every report, writes it.
        if not self.results or hasattr(self.config, "workerinput"):
            return
        try:
            self.report, self.paths = write_reports(
                self.report_dir(), self.provider.describe(), list(self.results.values())
            )
        except OSError as e:
            # The run itself is still worth its exit code: say so instead of crashing.
            self.write_error = f"cannot write the report to {self.report_dir()}: {e}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if self.write_error:
            tr.section("mailspec conformance")
            tr.write_line(self.write_error, red=True, bold=True)
        if self.report is None:
            return
        tr.section("mailspec conformance")
        full = bool(self.config.getoption("mailspec_matrix"))
        for line in render_matrix(self.report, only_problems=not full):
            tr.write_line(line)
        summary = self.report["summary"]
        failed = bool(summary.get("fail"))
        tr.write_line(
            f"target {self.report['target'].get('name')}: {summary_line(summary)}",
            bold=True,
            red=failed,
            green=not failed,
        )
        sections = self.report["sections"]
        tr.write_line(f"  RFC conformance:   {summary_line(sections['rfc'])}")
        tr.write_line(f"  platform promises: {summary_line(sections['platform'])}")
        listed = getattr(self.provider, "known_deviations", frozenset())
        for line in _classified_failures(self.report, getattr(self.provider, "deviations", {})):
            tr.write_line(line)
        passing = sorted(
            r["id"]
            for r in self.report["requirements"]
            if r["id"] in listed and r["status"] == "pass"
        )
        if passing:
            # Keep the list honest: a deviation the target no longer has should go.
            tr.write_line(f"listed as known deviations but passing: {', '.join(passing)}")
        reasons = self.report.get("not_applicable_reasons", {})
        if reasons:
            tr.write_line("not applicable, by reason:")
            for reason, n in list(reasons.items())[:10]:
                tr.write_line(f"  {n:>4}  {reason}")
            if len(reasons) > 10:
                tr.write_line(f"  ... and {len(reasons) - 10} more reasons (see the report)")
        for warning in sparse_protocols(self.report):
            # A run that checked almost nothing of a protocol must not read as green.
            tr.write_line(f"WARNING: {warning}", yellow=True, bold=True)
        for path in self.paths:
            tr.write_line(f"report: {path}")


def _classified_failures(report: dict[str, Any], deviations: Mapping[str, Deviation]) -> list[str]:
    """Each failure with its class from the reviewed deviations file; unexplained ones last."""
    rows = [r for r in report["requirements"] if r["status"] in ("deviation", "fail")]
    if not rows:
        return []
    counts: dict[str, int] = {}
    lines = []
    for row in sorted(rows, key=lambda r: (r["status"] == "fail", r["id"])):
        dev = deviations.get(row["id"])
        label = dev.label if dev is not None and row["status"] == "deviation" else "UNEXPLAINED"
        counts[label] = counts.get(label, 0) + 1
        lines.append(f"  {label:<15} {row['id']}: {row['title']}")
        if dev is not None:
            lines.append(f"      why: {dev.reason}")
            if dev.reference:
                lines.append(f"      see: {dev.reference}")
        lines.append(f"      observed: {row['detail']}")
    head = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    return [f"failures by classification: {head}", *lines]


_STATE = pytest.StashKey[_State]()
_ITEM_CLIENTS = pytest.StashKey[list[SMTPClient]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mailspec", "mailspec conformance suite")
    group.addoption(
        "--mailspec-target",
        metavar="FILE",
        default=None,
        help="TOML description of the mail system under test (default: start the reference)",
    )
    group.addoption(
        "--mailspec-report",
        metavar="DIR",
        default=None,
        help=f"where to write the conformance report (default: {DEFAULT_REPORT_DIR})",
    )
    group.addoption(
        "--mailspec-matrix",
        action="store_true",
        default=False,
        help="print every requirement's status at the end, not only the problems",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requirement(source, clause, level, title, needs=()): the requirement a conformance "
        "test checks (use conformance.requirements.requirement)",
    )
    config.addinivalue_line(
        "markers",
        f"needs(*capabilities): target capabilities a test needs ({', '.join(CAPABILITIES)})",
    )
    state = _State(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "mailspec-state")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # tryfirst: before the terminal prints its header, so an unreachable target gets its
    # lines and nothing else. A target that does not answer would otherwise fail every
    # test with the same connection error, each with its traceback.
    config = session.config
    provider = config.stash[_STATE]._provider
    if (
        not isinstance(provider, StaticTarget)
        or hasattr(config, "workerinput")  # the xdist controller probes, once
        or config.getoption("collectonly")
    ):
        return
    from conformance.probe import probe

    problems = probe(provider.target)
    if problems:
        # A usage error, as a target file that cannot be read is: the lines alone, exit 4.
        n = len(problems)
        head = (
            f"--mailspec-target {config.getoption('mailspec_target')}: "
            f"{n} endpoint{'' if n == 1 else 's'} cannot be used, no test was run:"
        )
        raise pytest.UsageError("\n".join([head, *problems]))


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Before the first test: what this run cannot check here, and how to change that."""
    if not any(item.get_closest_marker("requirement") for item in items):
        return []
    provider = config.stash[_STATE].provider
    notes = provider.capability_notes
    if not notes:
        return []
    wanting: dict[str, int] = {}
    for item in items:
        for cap in needed_capabilities(item.iter_markers()) & notes.keys():
            wanting[cap] = wanting.get(cap, 0) + 1
    return [
        f"mailspec: target {provider.name!r} lacks {cap!r}: {notes[cap]}; "
        f"{n} test{'' if n == 1 else 's'} needing it will be reported not applicable"
        for cap, n in sorted(wanting.items())
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        config.pluginmanager.unregister(state)


# -- collection: requirement ids ----------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: ids are computed from every collected test, before -k or -m deselect some,
    # so a requirement keeps its id whichever subset of the suite runs.
    per_item: list[tuple[pytest.Item, list[Requirement]]] = []
    levels: dict[tuple[str, str, str], Requirement] = {}
    for item in items:
        reqs: list[Requirement] = []
        try:
            needed_capabilities(item.iter_markers())
            for mark in item.iter_markers("requirement"):
                req = Requirement.from_mark(mark)
                if req.key not in {r.key for r in reqs}:
                    reqs.append(req)
        except ValueError as e:
            raise pytest.UsageError(f"{item.nodeid}: {e}") from None
        for req in reqs:
            seen = levels.setdefault(req.key, req)
            if seen.level != req.level:
                raise pytest.UsageError(
                    f"{item.nodeid}: requirement {req.source} {req.clause} {req.title!r} is "
                    f"{req.level} here but {seen.level} elsewhere"
                )
        if reqs:
            per_item.append((item, reqs))
    if not per_item:
        return
    ids = assign_ids(r for _, reqs in per_item for r in reqs)
    claimed = config.stash[_STATE].provider.features
    for item, reqs in per_item:
        for req in reqs:
            feature = feature_of(req.source, req.clause)
            # Carried on the reports themselves (not looked up by node id later), so the
            # report is right wherever the test ran, e.g. in an xdist worker.
            value = {
                "id": ids[req.key],
                "source": req.source,
                "clause": req.clause,
                "level": req.level.value,
                "title": req.title,
                # For the per-protocol counts (a warning when most did not apply).
                "protocol": protocol_of(item.path.name),
                # A platform promise the target does not claim is reported "not claimed",
                # whatever a test shared with an RFC requirement found.
                "feature": feature,
                "claimed": feature is None or feature in claimed,
            }
            item.user_properties.append((_PROPERTY, json.dumps(value)))


# -- running: capabilities, outcomes ------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before fixtures are set up: a test the target cannot serve never starts the target.
    reqs = [json.loads(str(v)) for k, v in item.user_properties if k == _PROPERTY]
    if reqs and not any(r["claimed"] for r in reqs):
        name = item.config.stash[_STATE].provider.name
        features = ", ".join(sorted({f"{r['feature']!r}" for r in reqs}))
        pytest.skip(f"{NOT_CLAIMED}target {name!r} does not claim the feature {features}")
    needed = needed_capabilities(item.iter_markers())
    if not needed:
        return
    provider = item.config.stash[_STATE].provider
    missing = sorted(needed - provider.capabilities)
    if missing:
        not_applicable(missing_reason(provider.name, missing, provider.capability_notes))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    clients = item.stash.get(_ITEM_CLIENTS, [])
    if report.failed and clients:
        # What was said on the wire is usually the whole story of a conformance failure.
        for client in clients:
            report.sections.append((f"{client.name} transcript", client.transcript_text()))
    if report.failed and report.when == "call":
        _known_deviation(item, report)
    if report.failed and report.when == "call":
        _should_only(item, report)
    return report


def _should_only(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failure of a test that checks only SHOULDs (or MAYs) is a warning, not a MUST fail."""
    levels = {json.loads(str(v))["level"] for k, v in item.user_properties if k == _PROPERTY}
    if not levels or levels & {"MUST"}:
        return
    first = short_message(report.longrepr, "failed")
    # An xfail to pytest (exit code 0), "should_fail" to the report, with its transcript.
    report.outcome = "skipped"
    report.wasxfail = f"{SHOULD_PREFIX}{first}"


def _known_deviation(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failure the target lists as a known deviation becomes an expected failure."""
    provider = item.config.stash[_STATE].provider
    listed = getattr(provider, "known_deviations", frozenset())
    if not listed:
        return
    ids = [json.loads(str(v))["id"] for k, v in item.user_properties if k == _PROPERTY]
    hit = sorted(set(ids) & listed)
    if not hit:
        return
    first = short_message(report.longrepr, "failed")
    notes: Mapping[str, Deviation] = getattr(provider, "deviations", {})
    labels = sorted({notes[i].label for i in hit if i in notes})
    kind = f" [{', '.join(labels)}]" if labels else ""
    # An xfail to pytest (the run's exit code stays 0), a "deviation" to the report.
    report.outcome = "skipped"
    report.wasxfail = f"{DEVIATION_PREFIX}{', '.join(hit)}{kind}: {first}"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _mailspec_imap_revision(request: pytest.FixtureRequest) -> None:
    """RFC 9051 requirements only where IMAP4rev2 is advertised, RFC 3501 ones where IMAP4rev1
    is: applicability from what the server says (a no-op for every other test)."""
    props = request.node.user_properties
    reqs = {i: json.loads(str(v)) for i, (k, v) in enumerate(props) if k == _PROPERTY}
    sources = {r["source"] for r in reqs.values()}
    if not sources & set(IMAP_REVISIONS):
        return
    target = request.getfixturevalue("target")
    gap = imap_revision_gap(target, sources)
    if gap is not None:
        not_applicable(gap)
    # One test may check a clause of both revisions (the commands are the same): it runs, and
    # the requirement of the revision the server does not advertise is still not applicable,
    # whatever the test finds (carried on the reports, as "claimed" is).
    for i, req in reqs.items():
        own = imap_revision_gap(target, {req["source"]})
        if own is not None:
            props[i] = (_PROPERTY, json.dumps({**req, "not_applicable": own}))


@pytest.fixture(scope="session")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """The system under test, started on first use (the reference unless --mailspec-target)."""
    state = request.config.stash[_STATE]
    try:
        yield state.start(tmp_path_factory.mktemp("target"))
    finally:
        state.stop()


class SMTPConnector:
    """Opens raw SMTP connections to the target's endpoints; closes them after the test."""

    def __init__(self, target: Target, item: pytest.Item) -> None:
        self.target = target
        self._clients = item.stash.setdefault(_ITEM_CLIENTS, [])

    def __call__(
        self,
        role: str = "smtp",
        *,
        read_greeting: bool = True,
        preamble: bytes = b"",
    ) -> SMTPClient:
        """A connection to ``role`` (implicit TLS for smtps endpoints), greeting read."""
        ep = self.target.endpoint(role)
        if ep.protocol != "smtp":
            raise ValueError(f"{role!r} is an {ep.protocol} endpoint, not SMTP")
        tls = self.target.ssl_context() if ep.implicit_tls else None
        client = SMTPClient.connect(
            ep.host,
            ep.port,
            timeout=self.target.timeout,
            tls=tls,
            server_hostname=self.target.server_name(ep),
            read_greeting=False,
            preamble=preamble,
            name=role,
        )
        self._clients.append(client)
        if read_greeting:
            client.read_greeting()
        return client

    def session(self, role: str = "smtp", *, tls: bool = False) -> SMTPClient:
        """A connection past a 220 greeting and a 250 EHLO (and STARTTLS, with ``tls``)."""
        client = self(role)
        assert client.greeting is not None
        client.greeting.expect(220, doing=f"{role}: greeting")
        client.ehlo().expect(250, doing=f"{role}: EHLO")
        if tls and not client.tls_active:
            self.starttls(client)
        return client

    def starttls(self, client: SMTPClient) -> None:
        """STARTTLS (220 expected), handshake, and EHLO again as RFC 3207 requires."""
        ep = self.target.endpoint(client.name)
        client.starttls(self.target.ssl_context(), self.target.server_name(ep)).expect(
            220, doing=f"{client.name}: STARTTLS"
        )
        client.ehlo().expect(250, doing=f"{client.name}: EHLO after STARTTLS")

    def proxied(
        self, client_address: str, role: str = "smtp", *, client_port: int = 40000
    ) -> SMTPClient:
        """A connection whose PROXY v1 header claims ``client_address`` (capability needed)."""
        self.target.require("proxy-protocol")
        ep = self.target.endpoint(role)
        family_dst = "::1" if ":" in client_address else "127.0.0.1"
        header = proxy_v1_header((client_address, client_port), (family_dst, ep.port))
        return self(role, preamble=header)

    def close_all(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def smtp(target: Target, request: pytest.FixtureRequest) -> Iterator[SMTPConnector]:
    """``smtp()`` connects to the target's ``smtp`` endpoint; ``smtp("submission")`` etc."""
    connector = SMTPConnector(target, request.node)
    try:
        yield connector
    finally:
        connector.close_all()


@pytest.fixture
def clock(target: Target) -> ClockControl:
    """The target's clock (``clock.advance(seconds)``); not applicable without ``clock``."""
    target.require("clock")
    assert target.clock is not None
    return target.clock


@pytest.fixture
def admin(target: Target) -> Admin:
    """Create domains and accounts on the target; not applicable without ``admin``."""
    target.require("admin")
    assert target.admin is not None
    return target.admin


@pytest.fixture
def fake_internet(target: Target) -> Any:
    """The fake internet the target resolves through; not applicable without ``fake-dns``."""
    target.require("fake-dns")
    if target.fake_internet is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    return target.fake_internet


@pytest.fixture
def fake_dns(fake_internet: Any) -> Any:
    """The fake DNS (``fake_internet.dns``) to change records while a test runs."""
    return fake_internet.dns
