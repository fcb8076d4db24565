"""The mutation harness: plant each bug of tests/mutants.py in a small server, run the
conformance suite against it, and check the suite fails the requirement the bug breaks and
no other (compared with the same server without the bug).

Most bugs are planted in small servers (tests/broken_servers.py); a few, in the reference
itself through its test-only fault switches (reference/faults.py). The catch rate (mutants
caught / mutants planted) is printed at the end of the run and kept,
per mutant, in reports/mutation/mutation.json, which `mailspec check --coverage` reads. The
default run plants ``mutants.DEFAULT``; ``--mutants all`` (or a comma-separated list of flaw
names) plants others.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from broken_servers import BrokenServer
from mutants import DEFAULT, MUTANTS, Mutant

pytest_plugins = ["pytester"]

INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust", "-q")
# The bootstrap of a run against a faulted reference: argv[1] the fault ("" for none).
_PLANT = """
import contextlib, sys
import pytest
from reference import faults
fault = sys.argv[1]
with faults.planted(fault) if fault else contextlib.nullcontext():
    sys.exit(pytest.main(sys.argv[2:]))
"""
# (in the reference?, module set) -> {(source, title): status} without the bug
_CONTROL: dict[tuple[bool, tuple[str, ...]], dict[tuple[str, str], str]] = {}
# flaw -> what happened, for the report and the summary
RESULTS: dict[str, dict[str, Any]] = {}


def selected(config: pytest.Config) -> list[Mutant]:
    wanted = str(config.getoption("mutants") or "default")
    if wanted == "all":
        return list(MUTANTS)
    names = set(DEFAULT) if wanted == "default" else set(wanted.split(","))
    unknown = names - {m.flaw for m in MUTANTS}
    if unknown:
        raise pytest.UsageError(f"--mutants: unknown {', '.join(sorted(unknown))}")
    return [m for m in MUTANTS if m.flaw in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mutant" in metafunc.fixturenames:
        chosen = selected(metafunc.config)
        metafunc.parametrize("mutant", chosen, ids=[m.flaw for m in chosen])


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def reference_statuses(
    pytester: pytest.Pytester, fault: str | None, modules: tuple[str, ...]
) -> dict[tuple[str, str], str]:
    """Run the modules against the reference with ``fault`` planted: in a process of its own
    (the reference's modules imported afresh), which plants it in code before pytest runs."""
    report_file = pytester.path / "reports/conformance/conformance.json"
    report_file.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-c", _PLANT, fault or "", *INNER, "--pyargs", *modules],
        cwd=pytester.path,
        capture_output=True,
        timeout=600,
    )
    report = json.loads(report_file.read_text())
    return {(r["source"], r["title"]): r["status"] for r in report["requirements"]}


def statuses(
    pytester: pytest.Pytester, flaw: str | None, modules: tuple[str, ...]
) -> dict[tuple[str, str], str]:
    """Run the modules against the server with ``flaw``: each requirement's status; empty
    when the endpoint probe refused the target (then no test ran)."""
    workdir = pytester.path / f"server-{flaw or 'control'}"
    workdir.mkdir()
    server = BrokenServer(flaw, workdir, mailbox=True).start()
    report_file = pytester.path / "reports/conformance/conformance.json"
    report_file.unlink(missing_ok=True)
    try:
        target = pytester.path / "target.toml"
        target.write_text(server.target_toml())
        result = pytester.runpytest("--mailspec-target", str(target), *INNER, "--pyargs", *modules)
    finally:
        server.stop()
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        refused = "cannot be used, no test was run"
        assert any(refused in line for line in result.errlines), result.errlines
        return {}
    report = json.loads(report_file.read_text())
    return {(r["source"], r["title"]): r["status"] for r in report["requirements"]}


def test_mutant_is_caught_where_it_is(pytester: pytest.Pytester, mutant: Mutant) -> None:
    if mutant.gap:
        # An expected miss: reported as missed, and the run says why.
        RESULTS[mutant.flaw] = _result(mutant, "not planted", caught=False, unrelated=[])
        pytest.xfail(f"known gap: {mutant.gap}")
    run = reference_statuses if mutant.fault else statuses
    if (mutant.fault, mutant.modules) not in _CONTROL:
        _CONTROL[(mutant.fault, mutant.modules)] = run(pytester, None, mutant.modules)
    control = _CONTROL[(mutant.fault, mutant.modules)]
    key = (mutant.source, mutant.title)
    # A mutant whose requirement the control does not pass would prove nothing.
    assert control.get(key) == "pass", f"the control server does not pass {key}: {control.get(key)}"
    got = run(pytester, mutant.flaw, mutant.modules)
    if mutant.probe:
        RESULTS[mutant.flaw] = _result(mutant, "probe refused", caught=not got, unrelated=[])
        assert not got, f"{mutant.flaw}: the endpoint probe let the target through"
        return
    allowed = {key, *((mutant.source, t) for t in mutant.also)}
    unrelated = sorted(
        f"{source} {title} ({got.get((source, title))})"
        for (source, title), status in control.items()
        if status == "pass"
        and got.get((source, title)) == "fail"
        and (source, title) not in allowed
    )
    caught = got.get(key) == "fail"
    RESULTS[mutant.flaw] = _result(
        mutant, got.get(key, "missing"), caught=caught and not unrelated, unrelated=unrelated
    )
    assert caught, f"{mutant.flaw}: {key} is {got.get(key)!r}, not fail"
    assert not unrelated, f"{mutant.flaw} also fails unrelated requirements: {unrelated}"


def _result(mutant: Mutant, status: str, *, caught: bool, unrelated: list[str]) -> dict[str, Any]:
    return {
        "flaw": mutant.flaw,
        "source": mutant.source,
        "title": mutant.title,
        "status": status,
        "caught": caught,
        "unrelated": unrelated,
        "gap": mutant.gap,
    }
