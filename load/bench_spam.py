"""How well the spam filter separates the project's labelled corpus: figures, printed.

    python -m load.bench_spam [--corpus tests/data/spam-corpus] [--verbose] [--json FILE]

The corpus (``tests/data/spam-corpus``, written by its ``make_corpus.py``) is split in two
halves (even and odd files); Bayes learns one half and every classifier is measured on the
other, then the halves swap (two-fold cross-validation), and the table shows each fold and
their sum:

- rules alone: the spam check with its rule table, phishing links and the Office macro
  check, no Bayes (nothing to learn, so the learning half is not used);
- Bayes alone: the classifier's probability, spam at 0.9 or more (SpamBayes' cut-off);
  between 0.2 and 0.9 it is unsure, counted as ham and shown in its own column;
- the whole check: rules and Bayes bands together, as the MX scores a message.

"Spam" means the check files the message into Junk or refuses it (the default thresholds,
junk 5 and reject 10). Precision, recall and the false-positive rate are printed, never
asserted here; ``tests/test_spam_corpus.py`` holds the loose quality floor that is about
correctness. Bayes needs 200 messages of each class before it speaks on a live system;
here it speaks after one half of the corpus (its minimum is set to what it learnt). No
network: URI blocklists and DNSBLs are not consulted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reference.policy import Session
from reference.policy.spam import SpamCheck
from reference.scan.bayes import Classifiers

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "spam-corpus"
SPAM_CUTOFF = 0.9  # Bayes alone: spam at or above (SpamBayes' spam_cutoff)
HAM_CUTOFF = 0.2  # Bayes alone: ham below; in between, unsure
SESSION = Session(role="mx", peer="192.0.2.1", helo="mx.remote.example")

Message = tuple[str, bytes]  # (file name, bytes)


def load_corpus(root: Path = CORPUS) -> tuple[list[Message], list[Message]]:
    """(ham, spam), each sorted by file name."""

    def read(kind: str) -> list[Message]:
        return [(f.name, f.read_bytes()) for f in sorted((root / kind).glob("*.eml"))]

    ham, spam = read("ham"), read("spam")
    if not ham or not spam:
        raise FileNotFoundError(f"no corpus under {root} (run its make_corpus.py)")
    return ham, spam


def halves(items: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(even, odd): every family of the corpus is in both."""
    return list(items[0::2]), list(items[1::2])


@dataclass
class Tally:
    """A confusion matrix, with the misjudged messages named."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    unsure: int = 0
    false_positives: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(self, name: str, is_spam: bool, said_spam: bool, unsure: bool = False) -> None:
        self.unsure += unsure
        if is_spam and said_spam:
            self.tp += 1
        elif is_spam:
            self.fn += 1
            self.missed.append(name)
        elif said_spam:
            self.fp += 1
            self.false_positives.append(name)
        else:
            self.tn += 1

    def __iadd__(self, other: Tally) -> Tally:
        for k in ("tp", "fp", "tn", "fn", "unsure"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.false_positives += other.false_positives
        self.missed += other.missed
        return self

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def fp_rate(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


@dataclass
class Fold:
    name: str
    rules: Tally = field(default_factory=Tally)
    bayes: Tally = field(default_factory=Tally)
    whole: Tally = field(default_factory=Tally)
    seconds: float = 0.0  # the whole check over the test half
    messages: int = 0


def trained(ham: Sequence[Message], spam: Sequence[Message]) -> Classifiers:
    bayes = Classifiers.memory(min_spam=len(spam), min_ham=len(ham))
    for _, raw in spam:
        bayes.global_.train(raw, True)
    for _, raw in ham:
        bayes.global_.train(raw, False)
    return bayes


async def _said_spam(check: SpamCheck, raw: bytes) -> bool:
    verdict = await check.evaluate(SESSION, "", (), raw)
    return verdict.action != "inbox"


async def run_fold(
    name: str,
    train: tuple[Sequence[Message], Sequence[Message]],
    test: tuple[Sequence[Message], Sequence[Message]],
) -> Fold:
    fold = Fold(name)
    bayes = trained(*train)
    rules_only = SpamCheck()
    whole = SpamCheck(bayes=bayes)
    labelled = [(n, raw, False) for n, raw in test[0]] + [(n, raw, True) for n, raw in test[1]]
    for n, raw, is_spam in labelled:
        fold.rules.add(n, is_spam, await _said_spam(rules_only, raw))
        p = bayes.global_.score(raw)
        fold.bayes.add(n, is_spam, p >= SPAM_CUTOFF, unsure=HAM_CUTOFF <= p < SPAM_CUTOFF)
    started = time.perf_counter()
    for n, raw, is_spam in labelled:
        fold.whole.add(n, is_spam, await _said_spam(whole, raw))
    fold.seconds = time.perf_counter() - started
    fold.messages = len(labelled)
    bayes.close()
    return fold


async def measure(root: Path = CORPUS) -> list[Fold]:
    """Two folds: learn the even half and test the odd, then the other way round."""
    ham, spam = load_corpus(root)
    (ham_a, ham_b), (spam_a, spam_b) = halves(ham), halves(spam)
    return [
        await run_fold("learn even, test odd", (ham_a, spam_a), (ham_b, spam_b)),
        await run_fold("learn odd, test even", (ham_b, spam_b), (ham_a, spam_a)),
    ]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(folds: Sequence[Fold]) -> str:
    total = Fold("both folds")
    for f in folds:
        total.rules += f.rules
        total.bayes += f.bayes
        total.whole += f.whole
        total.seconds += f.seconds
        total.messages += f.messages
    head = (
        f"{'fold':<22} {'classifier':<12} {'precision':>9} {'recall':>7} {'FP rate':>8} "
        f"{'TP':>4} {'FP':>4} {'TN':>4} {'FN':>4} {'unsure':>6}"
    )
    lines = [head, "-" * len(head)]
    for f in [*folds, total]:
        for label, t in (("rules", f.rules), ("bayes", f.bayes), ("whole check", f.whole)):
            unsure = str(t.unsure) if label == "bayes" else ""
            lines.append(
                f"{f.name:<22} {label:<12} {_pct(t.precision):>9} {_pct(t.recall):>7} "
                f"{_pct(t.fp_rate):>8} {t.tp:>4} {t.fp:>4} {t.tn:>4} {t.fn:>4} {unsure:>6}"
            )
    rate = total.messages / total.seconds if total.seconds else 0.0
    lines.append(f"whole check: {total.messages} messages in {total.seconds:.2f}s ({rate:.0f}/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=CORPUS, help="a directory with ham/ and spam/")
    p.add_argument("--verbose", action="store_true", help="name the misjudged messages")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    try:
        folds = asyncio.run(measure(args.corpus))
    except FileNotFoundError as e:
        print(f"bench_spam: {e}", file=sys.stderr)
        return 2
    ham, spam = load_corpus(args.corpus)
    print(f"corpus: {len(ham)} ham, {len(spam)} spam ({args.corpus})")
    print(table(folds))
    if args.verbose:
        for f in folds:
            for label, t in (("rules", f.rules), ("bayes", f.bayes), ("whole check", f.whole)):
                if t.false_positives or t.missed:
                    print(f"{f.name}, {label}: false positives {t.false_positives or '-'}; "
                          f"missed {t.missed or '-'}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(f) for f in folds], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
