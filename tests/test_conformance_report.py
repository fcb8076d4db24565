"""Folding test outcomes into requirement rows, and rendering them."""

from __future__ import annotations

from typing import Any

from conformance.report import (
    Outcome,
    TestResult,
    aggregate,
    build_report,
    classify,
    render_markdown,
    short_message,
)


def reqd(
    rid: str, title: str = "t", source: str = "RFC5321", clause: str = "4.2"
) -> dict[str, str]:
    return {"id": rid, "source": source, "clause": clause, "level": "MUST", "title": title}


def result(nodeid: str, outcome: Outcome, detail: str = "", *reqs: dict[str, str]) -> TestResult:
    r = TestResult(nodeid, list(reqs) or [reqd("R")])
    r.record(outcome, detail)
    return r


def status_of(*results: TestResult) -> tuple[str, str]:
    (row,) = aggregate(results)
    return row.status.value, row.detail


def test_fold_rules() -> None:
    p, f = Outcome.PASS, Outcome.FAIL
    na, sk = Outcome.NOT_APPLICABLE, Outcome.SKIPPED
    assert status_of(result("a", p), result("b", p)) == ("pass", "")
    assert status_of(result("a", p), result("b", f, "boom"), result("c", f, "later")) == (
        "fail",
        "boom",
    )
    assert status_of(result("a", na, "no clock"), result("b", na, "no dns")) == (
        "not_applicable",
        "no clock",
    )
    assert status_of(result("a", p), result("b", na, "no clock")) == (
        "pass",
        "1 of 2 tests not applicable: no clock",
    )
    # A skip for another reason is never a pass, even beside passes.
    assert status_of(result("a", p), result("b", sk, "later")) == ("skipped", "later")
    assert status_of(result("a", sk, "later"), result("b", f, "boom"))[0] == "fail"


def test_phase_ranking_keeps_the_worst() -> None:
    r = TestResult("a", [reqd("R")])
    r.record(Outcome.PASS, "")
    r.record(Outcome.FAIL, "error in teardown: x")
    r.record(Outcome.FAIL, "second")
    assert (r.outcome, r.detail) == (Outcome.FAIL, "error in teardown: x")


def test_classify() -> None:
    assert classify("call", "passed", None, None) == (Outcome.PASS, "")
    assert classify("setup", "passed", None, None) is None
    assert classify("teardown", "passed", None, None) is None
    assert classify("setup", "skipped", ("f", 1, "Skipped: not applicable: no clock"), None) == (
        Outcome.NOT_APPLICABLE,
        "no clock",
    )
    assert classify("call", "skipped", ("f", 1, "Skipped: later"), None) == (
        Outcome.SKIPPED,
        "later",
    )
    assert classify("call", "skipped", None, "known bug") == (Outcome.SKIPPED, "xfail: known bug")
    verdict = classify("setup", "failed", "E   RuntimeError: no", None)
    assert verdict == (Outcome.FAIL, "error in setup: E   RuntimeError: no")


class _Crash:
    def __init__(self, message: str) -> None:
        self.reprcrash = type("C", (), {"message": message})()


def test_short_message() -> None:
    assert short_message(_Crash("AssertionError: EHLO: expected 250, got 550\nassert"), "") == (
        "EHLO: expected 250, got 550"
    )
    assert short_message(_Crash("conformance.smtp_client.SMTPTimeout: no reply"), "") == (
        "SMTPTimeout: no reply"
    )
    assert len(short_message(_Crash("x" * 1000), "")) == 300
    assert short_message(None, "failed") == "failed"


def test_rows_sorted_and_tests_deduplicated() -> None:
    rows = aggregate(
        [
            result("t1", Outcome.PASS, "", reqd("P", source="PLATFORM", clause="a.b")),
            result("t2", Outcome.PASS, "", reqd("X", clause="4.1.1.10")),
            result(
                "t3",
                Outcome.PASS,
                "",
                reqd("Y", clause="4.1.1.9"),
                reqd("P", "t", "PLATFORM", "a.b"),
            ),
        ]
    )
    assert [r.id for r in rows] == ["Y", "X", "P"]
    assert rows[2].tests == ["t1", "t3"]


def test_unfinished_tests_are_left_out() -> None:
    assert aggregate([TestResult("never-ran", [reqd("R")])]) == []


def test_markdown_escapes_cells() -> None:
    report: dict[str, Any] = build_report(
        {"name": "t|x", "kind": "external", "capabilities": []},
        aggregate([result("a", Outcome.FAIL, "got 550 | 5.7.1\nmore", reqd("R", "a | b"))]),
    )
    md = render_markdown(report)
    assert "| 4.2 | MUST | a \\| b | **FAIL** | got 550 \\| 5.7.1 more |" in md
    assert "**t\\|x**" in md
    assert report["summary"] == {
        "pass": 0,
        "fail": 1,
        "not_applicable": 0,
        "skipped": 0,
        "deviation": 0,
        "not_claimed": 0,
        "should_fail": 0,
    }


def test_known_deviation_folds_between_fail_and_skip() -> None:
    p, f, d = Outcome.PASS, Outcome.FAIL, Outcome.DEVIATION
    assert classify("call", "skipped", None, "known deviation: R: got 554") == (
        d,
        "R: got 554",
    )
    assert status_of(result("a", p), result("b", d, "R: got 554")) == ("deviation", "R: got 554")
    assert status_of(result("a", d, "x"), result("b", f, "boom")) == ("fail", "boom")
    report = build_report({"name": "t", "kind": "external"}, aggregate([result("a", d, "x")]))
    assert report["summary"]["deviation"] == 1
    assert "| known deviation | x |" in render_markdown(report)
