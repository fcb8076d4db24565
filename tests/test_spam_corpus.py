"""The labelled corpus: its generator is deterministic, and the filter keeps a quality floor.

The figures themselves are printed by ``python -m load.bench_spam``; what is asserted here
is correctness, loosely: no ordinary message of the corpus is ever filed as spam, and the
whole check still catches most spam once Bayes has learnt half of it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from reference.policy.spam import SpamCheck
from reference.scan.analysis import parse

ROOT = Path(__file__).resolve().parent.parent


def module(name: str, path: Path) -> ModuleType:
    """A script of the repository that is no installed package (load/, tests/data/)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    found = importlib.util.module_from_spec(spec)
    sys.modules[name] = found  # dataclasses look their module up
    spec.loader.exec_module(found)
    return found


bench = module("bench_spam", ROOT / "load" / "bench_spam.py")


def test_the_committed_corpus_is_what_the_generator_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_corpus = module("make_corpus", bench.CORPUS / "make_corpus.py")
    assert make_corpus.main(["--check"]) == 0, capsys.readouterr().err


def test_the_corpus_is_big_enough_and_well_formed() -> None:
    ham, spam = bench.load_corpus()
    assert len(ham) >= 60 and len(spam) >= 60
    for name, raw in ham + spam:
        parsed = parse(raw)
        assert not parsed.broken, name
        assert parsed.subject and parsed.from_addr and parsed.body.strip(), name
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), f"{name}: bare LF"


async def test_rules_alone_never_file_ham_as_spam() -> None:
    ham, _ = bench.load_corpus()
    check = SpamCheck()
    for name, raw in ham:
        verdict = await check.evaluate(bench.SESSION, "", (), raw)
        assert verdict.action == "inbox", f"{name}: {verdict.score.summary()}"


async def test_whole_check_with_bayes_keeps_the_floor() -> None:
    folds = await bench.measure(bench.CORPUS)
    for f in folds:
        assert f.whole.fp == 0, f"{f.name}: ham filed as spam: {f.whole.false_positives}"
        assert f.bayes.fp == 0, f"{f.name}: Bayes called ham spam: {f.bayes.false_positives}"
    caught = sum(f.whole.tp for f in folds)
    total = sum(f.whole.tp + f.whole.fn for f in folds)
    assert caught / total >= 0.6, f"the whole check caught {caught} of {total}"


def test_bench_prints_a_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.main(["--json", str(tmp_path / "spam.json")]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "both folds" in out and "whole check" in out
    assert (tmp_path / "spam.json").read_text().startswith("[")
