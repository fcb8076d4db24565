"""Bayes: learns from spam and ham, speaks only once trained enough, learns a message once."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from reference.scan import bayes as bayes_mod
from reference.scan.bayes import Bayes, MemoryTokens, SqliteTokens, junk_trainer, tokens
from reference.scan.spam import parse

SPAM_WORDS = [
    "offer",
    "cheap",
    "discount",
    "winner",
    "casino",
    "pills",
    "bonus",
    "exclusive",
    "deal",
    "unsubscribe",
]
HAM_WORDS = [
    "meeting",
    "agenda",
    "report",
    "project",
    "review",
    "lunch",
    "minutes",
    "budget",
    "schedule",
    "draft",
]
COMMON = ["the", "and", "for", "with", "this", "that", "you", "your", "from", "have", "will"]


def corpus_message(i: int, words: list[str], rng: random.Random) -> bytes:
    body = " ".join(rng.choice(words + COMMON) for _ in range(40))
    return (
        f"From: sender{i}@remote.example\r\nSubject: {rng.choice(words)} {i}\r\n"
        f"Message-ID: <{i}.{words[0]}@remote.example>\r\n\r\n{body}\r\n"
    ).encode()


def corpus(n: int, seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    spam = [corpus_message(i, SPAM_WORDS, rng) for i in range(n)]
    ham = [corpus_message(i, HAM_WORDS, rng) for i in range(n)]
    return spam, ham


def trained(store: bayes_mod.TokenStore, n: int, minimum: int) -> Bayes:
    b = Bayes(store, min_spam=minimum, min_ham=minimum)
    spam, ham = corpus(n)
    for s, h in zip(spam, ham, strict=True):
        b.train(s, True)
        b.train(h, False)
    return b


def test_tokens_are_words_domains_and_types() -> None:
    raw = (
        b"From: a@news.remote.example\r\nSubject: Cheap offer\r\nContent-Type: text/html\r\n\r\n"
        b'<a href="http://click.spammy.example/x">Buy</a> supercalifragilisticexpialidocious'
    )
    t = tokens(parse(raw))
    assert {"s:cheap", "s:offer", "buy", "url:spammy.example", "from:news.remote.example"} <= t
    assert "skip:s30" in t and "html-only" in t


def test_silent_until_trained_enough() -> None:
    b = trained(MemoryTokens(), 199, 200)
    spam, _ = corpus(1, seed=9)
    assert not b.ready
    assert b.score(spam[0]) == 0.5
    assert bayes_mod.hit(0.5) is None


def test_separates_spam_from_ham() -> None:
    b = trained(MemoryTokens(), 200, 200)
    assert b.ready
    spam, ham = corpus(20, seed=7)
    assert all(b.score(m) > 0.9 for m in spam)
    assert all(b.score(m) < 0.1 for m in ham)
    neutral = b"Subject: zebra\r\n\r\nquokka axolotl narwhal\r\n"
    assert b.score(neutral) == 0.5  # no known token: no opinion


def test_bands_become_rules() -> None:
    assert bayes_mod.hit(0.999) == bayes_mod.Hit("BAYES_99", 3.5, "0.999")
    assert [getattr(bayes_mod.hit(p), "rule", None) for p in (0.96, 0.85, 0.65, 0.03, 0.001)] == [
        "BAYES_95",
        "BAYES_80",
        "BAYES_60",
        "BAYES_05",
        "BAYES_00",
    ]
    assert bayes_mod.hit(0.5) is None
    assert bayes_mod.hit(1.0) is not None


def test_a_message_is_learnt_once_and_can_move() -> None:
    store = MemoryTokens()
    b = Bayes(store, min_spam=1, min_ham=1)
    m = corpus(1)[0][0]
    assert b.train(m, True)
    assert not b.train(m, True)  # a second copy into Junk
    assert store.totals() == (1, 0)
    assert b.train(m, False)  # the user moved it out of Junk: it was ham after all
    assert store.totals() == (0, 1)
    h = next(iter(bayes_mod._hash(t) for t in tokens(parse(m))))
    assert store.counts([h]) == {h: (0, 1)}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_stores_agree(kind: str, tmp_path: Path) -> None:
    store = MemoryTokens() if kind == "memory" else SqliteTokens(tmp_path / "bayes.sqlite3")
    b = trained(store, 60, 50)
    spam, ham = corpus(5, seed=3)
    assert [round(b.score(m), 6) for m in spam + ham] == [
        round(x, 6) for x in _reference_scores(spam + ham)
    ]
    b.close()


def _reference_scores(messages: list[bytes]) -> list[float]:
    b = trained(MemoryTokens(), 60, 50)
    return [b.score(m) for m in messages]


def test_sqlite_is_shared_and_persistent(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite3"
    a = Bayes.open(path, min_spam=1, min_ham=1)
    other = Bayes.open(path, min_spam=1, min_ham=1)  # another worker process of the node
    spam, ham = corpus(3)
    a.train(spam[0], True)
    other.train(ham[0], False)
    assert a.store.totals() == other.store.totals() == (1, 1)
    a.close()
    other.close()
    again = Bayes.open(path, min_spam=1, min_ham=1)
    assert again.store.totals() == (1, 1)
    assert not again.train(spam[0], True)
    again.close()


def test_the_database_holds_no_words(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite3"
    b = Bayes.open(path)
    b.train(b"Subject: confidential\r\n\r\nmy secret password hunter2\r\n", False)
    b.close()
    wal = path.with_name(path.name + "-wal")
    data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"hunter2" not in data and b"password" not in data


def test_junk_hook_trains_from_worker_threads(tmp_path: Path) -> None:
    b = Bayes.open(tmp_path / "bayes.sqlite3", min_spam=1, min_ham=1)
    hook = junk_trainer(b)
    spam, ham = corpus(40)
    threads = [
        threading.Thread(target=lambda m=m, s=s: hook("alice@example.test", m, s))
        for batch, s in ((spam, True), (ham, False))
        for m in batch
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.store.totals() == (40, 40)
    b.close()


def test_train_all_counts() -> None:
    b = Bayes(MemoryTokens())
    spam, _ = corpus(5)
    assert bayes_mod.train_all(b, spam + spam[:2], True) == (5, 2)


def test_broken_messages_train_and_score() -> None:
    b = trained(MemoryTokens(), 20, 10)
    for junk in (b"", b"\xff\xfe\x00", b"Content-Type: multipart/mixed\r\n\r\n--"):
        b.train(junk, True)
        assert 0.0 <= b.score(junk) <= 1.0
