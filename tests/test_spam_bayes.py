"""Bayes: learns from spam and ham, speaks only once trained enough, learns a message once."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from reference.scan import bayes as bayes_mod
from reference.scan.analysis import parse
from reference.scan.bayes import Bayes, Classifiers, MemoryTokens, junk_trainer, tokens
from reference.state.tokens import SqliteTokenDB

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
    assert bayes_mod.hit(0.995) == bayes_mod.Hit("BAYES_99", 3.5, "0.995")
    assert bayes_mod.hit(0.9996) == bayes_mod.Hit("BAYES_999", 5.0, "1.000")
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
    db = SqliteTokenDB(tmp_path / "bayes.sqlite3") if kind == "sqlite" else None
    b = trained(db.scope() if db else MemoryTokens(), 60, 50)
    spam, ham = corpus(5, seed=3)
    assert [round(b.score(m), 6) for m in spam + ham] == [
        round(x, 6) for x in _reference_scores(spam + ham)
    ]
    if db:
        db.close()


def _reference_scores(messages: list[bytes]) -> list[float]:
    b = trained(MemoryTokens(), 60, 50)
    return [b.score(m) for m in messages]


def test_sqlite_is_shared_and_persistent(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite3"
    one, two = SqliteTokenDB(path), SqliteTokenDB(path)  # two worker processes of a node
    a = Bayes(one.scope(), min_spam=1, min_ham=1)
    other = Bayes(two.scope(), min_spam=1, min_ham=1)
    spam, ham = corpus(3)
    a.train(spam[0], True)
    other.train(ham[0], False)
    assert a.store.totals() == other.store.totals() == (1, 1)
    one.close()
    two.close()
    db = SqliteTokenDB(path)
    again = Bayes(db.scope(), min_spam=1, min_ham=1)
    assert again.store.totals() == (1, 1)
    assert not again.train(spam[0], True)
    db.close()


def test_the_database_holds_no_words(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite3"
    db = SqliteTokenDB(path)
    c = Classifiers(db)
    c.learn_for_user(
        "alice@example.test", b"Subject: confidential\r\n\r\nmy secret hunter2\r\n", False
    )
    db.close()
    wal = path.with_name(path.name + "-wal")
    data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"hunter2" not in data and b"secret" not in data


def test_junk_hook_trains_the_user_and_the_global_classifier_from_threads(
    tmp_path: Path,
) -> None:
    db = SqliteTokenDB(tmp_path / "bayes.sqlite3")
    c = Classifiers(db, min_spam=1, min_ham=1, user_min=1)
    hook = junk_trainer(c)
    spam, ham = corpus(40)
    threads = [
        threading.Thread(target=lambda m=m, s=s, i=i: hook(f"u{i % 2}@example.test", m, s))
        for batch, s in ((spam, True), (ham, False))
        for i, m in enumerate(batch)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.global_.store.totals() == (40, 40)
    assert c.user("u0@example.test").store.totals() == (20, 20)
    assert c.user("u1@example.test").store.totals() == (20, 20)
    assert c.user("nobody@example.test").store.totals() == (0, 0)
    db.close()


def test_a_users_classifier_scores_their_mail_once_ready() -> None:
    c = Classifiers.memory(min_spam=1, min_ham=1, user_min=5)
    spam, ham = corpus(5)
    for i in range(4):
        c.learn_for_user("alice@example.test", spam[i], True)
        c.learn_for_user("alice@example.test", ham[i], False)
    assert c.for_recipient("alice@example.test")[0] == "global"  # 4 of each: not yet
    c.learn_for_user("alice@example.test", spam[4], True)
    c.learn_for_user("alice@example.test", ham[4], False)
    whose, bayes = c.for_recipient("alice@example.test")
    assert whose == "user" and bayes.store is c.user("alice@example.test").store
    assert c.for_recipient("bob@example.test")[0] == "global"
    assert c.for_recipient(None) == ("global", c.global_)


def test_users_disagree_and_each_is_scored_by_their_own() -> None:
    # What one user calls spam another reads: a newsletter.
    c = Classifiers.memory(min_spam=10, min_ham=10, user_min=10)
    rng = random.Random(5)
    letters = [corpus_message(i, ["newsletter", "garden", "seeds"], rng) for i in range(30)]
    spam, ham = corpus(30, seed=11)
    for i in range(20):
        c.learn_for_user("alice@example.test", letters[i], True)
        c.learn_for_user("alice@example.test", ham[i], False)
        c.learn_for_user("bob@example.test", letters[i], False)
        c.learn_for_user("bob@example.test", spam[i], True)
    probe = letters[25]
    assert c.for_recipient("alice@example.test")[1].score(probe) > 0.9
    assert c.for_recipient("bob@example.test")[1].score(probe) < 0.1


def test_train_all_counts() -> None:
    b = Bayes(MemoryTokens())
    spam, _ = corpus(5)
    assert bayes_mod.train_all(b, spam + spam[:2], True) == (5, 2)


def test_broken_messages_train_and_score() -> None:
    b = trained(MemoryTokens(), 20, 10)
    for junk in (b"", b"\xff\xfe\x00", b"Content-Type: multipart/mixed\r\n\r\n--"):
        b.train(junk, True)
        assert 0.0 <= b.score(junk) <= 1.0
