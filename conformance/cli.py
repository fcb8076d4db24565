"""``mailspec check``: run the conformance suite (pytest underneath) and print the matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import conformance

__all__ = ["pytest_args", "register", "run"]

TESTS_PACKAGE = "conformance.tests"


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``check`` subcommand to the ``mailspec`` command line."""
    p = sub.add_parser(
        "check",
        parents=parents,
        help="run the conformance suite against a target and write the report",
        description=(
            "Run the conformance suite (pytest) against the reference, started in process, "
            "or against the mail system a TOML target file describes; print one line per "
            "requirement and write conformance.md, conformance.json and junit.xml."
        ),
    )
    p.add_argument(
        "--target",
        metavar="FILE",
        help="TOML target description (see conformance/targets/example-postfix.toml)",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        help="report directory (default: reports/conformance)",
    )
    p.add_argument("-k", metavar="EXPR", dest="keyword", help="only tests matching EXPR")
    p.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    p.add_argument(
        "--coverage",
        action="store_true",
        help="run nothing: list the MUST clauses of each claimed RFC (conformance/clauses.toml) "
        "as covered by a requirement or not, and the catch rate of the last mutation run",
    )
    p.add_argument(
        "--mutation",
        metavar="FILE",
        help="the mutation results --coverage reads (default: reports/mutation/mutation.json)",
    )
    p.set_defaults(func=run)


def pytest_args(args: argparse.Namespace) -> list[str]:
    """The pytest command line that ``mailspec check`` amounts to."""
    argv = [
        "--pyargs",
        TESTS_PACKAGE,
        "--mailspec-matrix",
        # Node ids in the report read "conformance/tests/..." from whatever directory (an
        # operator's, with no pytest configuration) the suite is run.
        "--rootdir",
        str(Path(conformance.__file__).resolve().parent.parent),
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        # ... and leave no cache behind in that directory.
        "-p",
        "no:cacheprovider",
        # This command imported the conformance package before pytest loads it as a plugin;
        # the test modules themselves are still rewritten, so the warning only confuses.
        "-W",
        "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
    ]
    if getattr(args, "target", None):
        argv += ["--mailspec-target", str(args.target)]
    if getattr(args, "report", None):
        argv += ["--mailspec-report", str(args.report)]
    if getattr(args, "keyword", None):
        argv += ["-k", str(args.keyword)]
    if getattr(args, "exitfirst", False):
        argv.append("-x")
    return argv


def run(args: argparse.Namespace) -> int:
    """Run the suite; pytest's exit code (0: all pass or not applicable, 1: failures).

    2 before anything runs: the target file cannot be read, or an endpoint it lists does
    not answer (one line each), rather than every test failing on the same connection.
    With ``--coverage`` nothing runs: the clause index is printed (1: it names a
    requirement the suite does not have).
    """
    if getattr(args, "coverage", False):
        from conformance.coverage import run as coverage

        mutation = getattr(args, "mutation", None)
        return coverage(Path(mutation) if mutation else None)
    if getattr(args, "target", None):
        import sys

        from conformance.probe import probe
        from conformance.target import TargetError, load_target

        try:
            problems = probe(load_target(Path(args.target)).target)
        except TargetError as e:
            problems = [str(e)]
        for line in problems:
            print(f"mailspec check: {line}", file=sys.stderr)
        if problems:
            return 2
    return int(pytest.main(pytest_args(args)))
