"""The conformance report: test outcomes folded into requirement rows, as Markdown, JSON, JUnit."""

from __future__ import annotations

import enum
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.requirements import NOT_APPLICABLE, NOT_CLAIMED, clause_key, source_key

__all__ = [
    "DEVIATION_PREFIX",
    "SHOULD_PREFIX",
    "Outcome",
    "RequirementRow",
    "TestResult",
    "aggregate",
    "build_report",
    "render_markdown",
    "render_matrix",
    "sparse_protocols",
    "write_reports",
]

_DETAIL_MAX = 300
_LONGREPR_MAX = 20_000


class Outcome(enum.StrEnum):
    """A test's or a requirement's status in the report."""

    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    # Skipped for a reason other than a missing capability (a skip mark, importorskip,
    # an xfail): the requirement was not checked, so it must not read as a pass, and it
    # is not the target's doing either, so it is not "not applicable".
    SKIPPED = "skipped"
    # Failed, on a target whose description lists the requirement as a known deviation
    # ([expect] known_deviations): the target's reading of the RFC differs from the
    # suite's, on purpose and documented, so it is reported, not counted as a failure.
    DEVIATION = "deviation"
    # Failed, where every requirement the test checks is a SHOULD (or MAY): a warning, not
    # a MUST failure; the run's exit code stays 0.
    SHOULD_FAIL = "should_fail"
    # A platform promise (PLATFORM requirement) of a feature the target does not claim
    # (``features`` in its description): neither checked nor owed.
    NOT_CLAIMED = "not_claimed"


# When a test's phases disagree (a pass whose teardown fails), the worst one stands.
_RANK = {
    Outcome.PASS: 0,
    Outcome.NOT_CLAIMED: 1,
    Outcome.NOT_APPLICABLE: 1,
    Outcome.SKIPPED: 2,
    Outcome.DEVIATION: 3,
    Outcome.SHOULD_FAIL: 4,
    Outcome.FAIL: 5,
}

# The xfail reason the plugin gives a failure the target lists as a known deviation.
DEVIATION_PREFIX = "known deviation: "
# ... and a failure of a test that checks only SHOULDs.
SHOULD_PREFIX = "SHOULD not met: "


@dataclass
class TestResult:
    """What one test did, over its setup, call and teardown phases."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    requirements: list[dict[str, str]]
    outcome: Outcome | None = None
    detail: str = ""
    longrepr: str = ""
    duration: float = 0.0

    def record(self, outcome: Outcome, detail: str, longrepr: str = "") -> None:
        if self.outcome is None or _RANK[outcome] > _RANK[self.outcome]:
            self.outcome = outcome
            self.detail = detail
            self.longrepr = longrepr


@dataclass
class RequirementRow:
    """One row of the report."""

    id: str
    source: str
    clause: str
    level: str
    title: str
    status: Outcome
    tests: list[str] = field(default_factory=list)
    detail: str = ""
    protocols: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "clause": self.clause,
            "level": self.level,
            "title": self.title,
            "status": self.status.value,
            "tests": list(self.tests),
            "detail": self.detail,
        }


def skip_reason(longrepr: object) -> str:
    """The reason of a skip report, without pytest's ``Skipped: `` prefix."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
    return text.removeprefix("Skipped: ")


def is_not_applicable(reason: str) -> bool:
    return reason.startswith(NOT_APPLICABLE)


def short_message(longrepr: object, fallback: str) -> str:
    """One line saying why a test failed: the exception's first line, bounded."""
    message: str | None = None
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = getattr(crash, "message", None)
    if not message:
        text = str(longrepr or "").strip()
        message = text.splitlines()[-1] if text else fallback
    first = message.strip().splitlines()[0] if message.strip() else fallback
    # "AssertionError: expected 250, got 550" reads better as just the assertion text; a
    # qualified exception name keeps only its last part.
    first = re.sub(r"^AssertionError: ", "", first)
    first = re.sub(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*: )", r"\1", first)
    return first if len(first) <= _DETAIL_MAX else first[: _DETAIL_MAX - 1] + "…"


def classify(
    when: str, outcome: str, longrepr: object, wasxfail: str | None
) -> tuple[Outcome, str] | None:
    """Map one pytest phase report to an outcome (None: the phase says nothing new)."""
    if outcome == "failed":
        msg = short_message(longrepr, "failed")
        return Outcome.FAIL, msg if when == "call" else f"error in {when}: {msg}"
    if outcome == "skipped":
        if wasxfail is not None and wasxfail.startswith(DEVIATION_PREFIX):
            return Outcome.DEVIATION, wasxfail.removeprefix(DEVIATION_PREFIX)
        if wasxfail is not None and wasxfail.startswith(SHOULD_PREFIX):
            return Outcome.SHOULD_FAIL, wasxfail.removeprefix(SHOULD_PREFIX)
        if wasxfail is not None:
            return Outcome.SKIPPED, f"xfail: {wasxfail}" if wasxfail else "xfail"
        reason = skip_reason(longrepr)
        if reason.startswith(NOT_CLAIMED):
            return Outcome.NOT_CLAIMED, reason.removeprefix(NOT_CLAIMED)
        if is_not_applicable(reason):
            return Outcome.NOT_APPLICABLE, reason.removeprefix(NOT_APPLICABLE)
        return Outcome.SKIPPED, reason
    if outcome == "passed" and when == "call":
        return Outcome.PASS, ""
    return None


def aggregate(results: Iterable[TestResult]) -> list[RequirementRow]:
    """Fold test results into requirement rows, sorted by source, then clause numerically.

    fail if any test failed (detail: the first failure); otherwise skipped if any test was
    skipped for another reason than a capability; pass if at least one passed and the rest
    were not applicable; not_applicable if all were.
    """
    rows: dict[str, RequirementRow] = {}
    members: dict[str, list[TestResult]] = {}
    results_seen = list(results)
    for result in results_seen:
        if result.outcome is None:
            continue  # never reached its call phase (interrupted run)
        for req in result.requirements:
            row = rows.get(req["id"])
            if row is None:
                row = rows[req["id"]] = RequirementRow(
                    id=req["id"],
                    source=req["source"],
                    clause=req["clause"],
                    level=req["level"],
                    title=req["title"],
                    status=Outcome.PASS,
                )
                members[row.id] = []
            if req.get("protocol"):
                row.protocols.add(req["protocol"])
            if result.nodeid not in row.tests:
                row.tests.append(result.nodeid)
                members[row.id].append(result)
    unclaimed = {
        r["id"]: r.get("feature")
        for result in results_seen
        for r in result.requirements
        if r.get("claimed") is False
    }
    # A requirement of an IMAP revision the server does not advertise, checked by a test
    # shared with the other revision's twin.
    beside = {
        r["id"]: r["not_applicable"]
        for result in results_seen
        for r in result.requirements
        if r.get("not_applicable")
    }
    for row in rows.values():
        row.status, row.detail = _fold(members[row.id])
        if row.id in beside:
            row.status, row.detail = Outcome.NOT_APPLICABLE, beside[row.id]
        if row.id in unclaimed:
            row.status = Outcome.NOT_CLAIMED
            row.detail = f"the target does not claim the feature {unclaimed[row.id]!r}"
    return sorted(
        rows.values(),
        key=lambda r: (source_key(r.source), clause_key(r.clause), r.title.casefold(), r.id),
    )


def _fold(tests: Sequence[TestResult]) -> tuple[Outcome, str]:
    by: dict[Outcome, list[TestResult]] = {o: [] for o in Outcome}
    for t in tests:
        assert t.outcome is not None
        by[t.outcome].append(t)
    for status in (Outcome.FAIL, Outcome.SHOULD_FAIL, Outcome.DEVIATION, Outcome.SKIPPED):
        if by[status]:
            return status, by[status][0].detail
    na = by[Outcome.NOT_APPLICABLE]
    if by[Outcome.PASS]:
        if na:
            return Outcome.PASS, f"{len(na)} of {len(tests)} tests not applicable: {na[0].detail}"
        return Outcome.PASS, ""
    return Outcome.NOT_APPLICABLE, na[0].detail if na else ""


def build_report(target: Mapping[str, Any], rows: Sequence[RequirementRow]) -> dict[str, Any]:
    """The JSON document: target, summary counts, and one entry per requirement."""
    summary = {o.value: 0 for o in (Outcome.PASS, Outcome.FAIL, Outcome.NOT_APPLICABLE)}
    summary[Outcome.SKIPPED.value] = 0
    summary[Outcome.DEVIATION.value] = 0
    summary[Outcome.NOT_CLAIMED.value] = 0
    summary[Outcome.SHOULD_FAIL.value] = 0
    # RFC conformance and platform promises apart: a platform that claims few features is
    # no less conformant to the RFCs.
    sections = {"rfc": dict(summary), "platform": dict(summary)}
    reasons: dict[str, int] = {}
    protocols: dict[str, dict[str, int]] = {}
    for row in rows:
        summary[row.status.value] += 1
        sections["platform" if row.source == "PLATFORM" else "rfc"][row.status.value] += 1
        if row.status is Outcome.NOT_APPLICABLE:
            reasons[row.detail] = reasons.get(row.detail, 0) + 1
        for protocol in row.protocols:
            counts = protocols.setdefault(protocol, {"requirements": 0, "not_applicable": 0})
            counts["requirements"] += 1
            counts["not_applicable"] += row.status is Outcome.NOT_APPLICABLE
    return {
        "target": dict(target),
        "summary": summary,
        "sections": sections,
        # How many requirements each reason made not applicable, most first: what the
        # target would have to offer for the run to check more.
        "not_applicable_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "protocols": dict(sorted(protocols.items())),
        "requirements": [row.as_json() for row in rows],
    }


def sparse_protocols(report: Mapping[str, Any]) -> list[str]:
    """A warning for each protocol of which more than half the requirements did not apply."""
    out = []
    for protocol, counts in report.get("protocols", {}).items():
        n, na = counts["requirements"], counts["not_applicable"]
        if n and na * 2 > n:
            out.append(
                f"{protocol}: {na} of {n} requirements were not applicable; this run "
                f"checked little of {protocol.upper()} (see the reasons above)"
            )
    return out


_STATUS_MD = {
    "pass": "pass",
    "fail": "**FAIL**",
    "not_applicable": "not applicable",
    "skipped": "skipped",
    "deviation": "known deviation",
    "not_claimed": "not claimed",
    "should_fail": "**SHOULD not met**",
}


def source_title(source: str) -> str:
    if source == "PLATFORM":
        return "Platform policies"
    if source.startswith("RFC") and source[3:].isdigit():
        return f"RFC {source[3:]}"
    return source


def summary_line(summary: Mapping[str, int]) -> str:
    total = sum(summary.values())
    parts = [
        f"{summary.get('pass', 0)} pass",
        f"{summary.get('fail', 0)} fail",
        f"{summary.get('not_applicable', 0)} not applicable",
    ]
    if summary.get("skipped", 0):
        parts.append(f"{summary['skipped']} skipped")
    if summary.get("deviation", 0):
        n = summary["deviation"]
        parts.append(f"{n} known deviation{'' if n == 1 else 's'}")
    if summary.get("should_fail", 0):
        parts.append(f"{summary['should_fail']} SHOULD not met")
    if summary.get("not_claimed", 0):
        parts.append(f"{summary['not_claimed']} not claimed")
    noun = "requirement" if total == 1 else "requirements"
    return f"{total} {noun}: " + ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(report: Mapping[str, Any]) -> str:
    """Requirements grouped by source, one table row each, below a summary line."""
    target = report["target"]
    caps = ", ".join(target.get("capabilities", [])) or "none"
    out = [
        "# Conformance report",
        "",
        f"Target: **{_cell(str(target.get('name', '?')))}** ({target.get('kind', '?')});"
        f" capabilities: {caps}",
        "",
        f"**{summary_line(report['summary'])}**",
    ]
    sections = report.get("sections", {})
    if sections:
        out += [
            "",
            f"- RFC conformance: {summary_line(sections['rfc'])}",
            f"- Platform promises: {summary_line(sections['platform'])}",
        ]
    reasons = report.get("not_applicable_reasons", {})
    if reasons:
        out += ["", "Not applicable, by reason:", ""]
        out += [f"- {n}: {_cell(reason)}" for reason, n in reasons.items()]
    for warning in sparse_protocols(report):
        out += ["", f"**Warning**: {warning}"]
    current: str | None = None
    for req in report["requirements"]:
        if req["source"] != current:
            current = req["source"]
            out += [
                "",
                f"## {source_title(current)}",
                "",
                "| Clause | Level | Requirement | Status | Detail |",
                "| --- | --- | --- | --- | --- |",
            ]
        out.append(
            f"| {_cell(req['clause'])} | {req['level']} | {_cell(req['title'])} "
            f"| {_STATUS_MD.get(req['status'], req['status'])} | {_cell(req['detail'])} |"
        )
    return "\n".join(out) + "\n"


_STATUS_TERM = {
    "pass": "pass",
    "fail": "FAIL",
    "not_applicable": "n/a",
    "skipped": "skipped",
    "deviation": "deviate",
    "not_claimed": "unclaimed",
    "should_fail": "SHOULD",
}


def render_matrix(report: Mapping[str, Any], *, only_problems: bool = False) -> list[str]:
    """Terminal lines: one per requirement (or per failed or skipped one), by source."""
    lines: list[str] = []
    current: str | None = None
    for req in report["requirements"]:
        if only_problems and req["status"] not in ("fail", "should_fail", "skipped", "deviation"):
            continue
        if req["source"] != current:
            current = req["source"]
            lines.append(source_title(current))
        status = _STATUS_TERM.get(req["status"], req["status"])
        line = f"  {status:<7} {req['level']:<6} {req['clause']:<12} {req['title']}"
        if req["detail"] and req["status"] != "pass":
            line += f"  -- {req['detail']}"
        lines.append(line)
    return lines


_JUNIT_SKIPPED = (
    Outcome.SKIPPED,
    Outcome.NOT_APPLICABLE,
    Outcome.DEVIATION,
    Outcome.NOT_CLAIMED,
    Outcome.SHOULD_FAIL,
)


def junit_xml(results: Sequence[TestResult], suite_name: str = "mailspec-conformance") -> bytes:
    """JUnit XML, one testcase per test, with the requirement ids as properties."""
    counted = [r for r in results if r.outcome is not None]
    failures = sum(r.outcome is Outcome.FAIL for r in counted)
    skipped = sum(r.outcome in _JUNIT_SKIPPED for r in counted)
    total_time = sum(r.duration for r in counted)
    suite = ET.Element(
        "testsuite",
        name=suite_name,
        tests=str(len(counted)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{total_time:.3f}",
    )
    for result in counted:
        path, _, rest = result.nodeid.partition("::")
        names = rest.split("::") if rest else [result.nodeid]
        module = path.removesuffix(".py").replace("/", ".")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=".".join([module, *names[:-1]]),
            name=names[-1],
            time=f"{result.duration:.3f}",
        )
        props = ET.SubElement(case, "properties")
        for req in result.requirements:
            ET.SubElement(props, "property", name="requirement", value=req["id"])
        if result.outcome is Outcome.FAIL:
            fail = ET.SubElement(case, "failure", message=result.detail)
            fail.text = result.longrepr[:_LONGREPR_MAX]
        elif result.outcome in _JUNIT_SKIPPED:
            ET.SubElement(case, "skipped", type=result.outcome.value, message=result.detail)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def write_reports(
    directory: Path, target: Mapping[str, Any], results: Sequence[TestResult]
) -> tuple[dict[str, Any], list[Path]]:
    """Write conformance.md, conformance.json and junit.xml; return the report and paths."""
    report = build_report(target, aggregate(results))
    directory.mkdir(parents=True, exist_ok=True)
    paths = [
        directory / "conformance.md",
        directory / "conformance.json",
        directory / "junit.xml",
    ]
    contents = [
        render_markdown(report).encode(),
        (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
        junit_xml(results),
    ]
    for path, data in zip(paths, contents, strict=True):
        # Write then rename: a reader (a CI step, a dashboard) never sees half a report.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return report, paths
