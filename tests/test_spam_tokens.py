"""Token stores (memory, SQLite, a real redis-server) agree, keep scopes apart, count exactly."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reference.scan.bayes import Bayes, Classifiers
from reference.state.server import RedisServer
from reference.state.tokens import (
    GLOBAL,
    MemoryTokenDB,
    RedisTokenDB,
    SqliteTokenDB,
    TokenDB,
    open_tokens,
)

if TYPE_CHECKING:
    from conftest import Backend


Factory = Callable[[], TokenDB]


@pytest.fixture
def factory(backend: Backend) -> Iterator[Factory]:
    """Opens the same database again, as another process (or node) would."""
    made: list[TokenDB] = []
    memory = MemoryTokenDB()

    def make() -> TokenDB:
        db: TokenDB
        if backend.name == "memory":
            db = memory
        elif backend.name == "sqlite":
            db = SqliteTokenDB(backend.path / "bayes.sqlite3")
        else:
            db = RedisTokenDB(backend.redis_url, prefix=backend.prefix)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


def test_learn_count_move_and_forget(factory: Factory) -> None:
    store = factory().scope()
    assert store.totals() == (0, 0) and store.counts([1, 2]) == {}
    assert store.learn(100, [1, 2, 3], spam=True)
    assert not store.learn(100, [1, 2, 3], spam=True)  # the same message again
    assert store.learn(101, [2, 3, 4], spam=False)
    assert store.totals() == (1, 1)
    assert store.counts([1, 2, 4, 9]) == {1: (1, 0), 2: (1, 1), 4: (0, 1)}
    assert store.learn(100, [1, 2, 3], spam=False)  # moved out of Junk: ham after all
    assert store.totals() == (0, 2)
    assert store.counts([1, 2, 3]) == {1: (0, 1), 2: (0, 2), 3: (0, 2)}


def test_scopes_are_apart(factory: Factory) -> None:
    db = factory()
    db.scope("alice@example.test").learn(1, [10, 11], spam=True)
    db.scope(GLOBAL).learn(1, [10], spam=False)
    assert db.scope("alice@example.test").totals() == (1, 0)
    assert db.scope("bob@example.test").totals() == (0, 0)
    assert db.scope().totals() == (0, 1)
    assert db.scope("alice@example.test").counts([10, 11]) == {10: (1, 0), 11: (1, 0)}
    assert db.scope().counts([10, 11]) == {10: (0, 1)}


def test_shared_between_connections(factory: Factory) -> None:
    one, two = factory(), factory()
    one.scope("a@example.test").learn(7, [1], spam=True)
    assert two.scope("a@example.test").totals() == (1, 0)
    assert not two.scope("a@example.test").learn(7, [1], spam=True)


def test_large_messages_and_negative_hashes(factory: Factory) -> None:
    store = factory().scope()
    hashes = [h * 7919 - (1 << 62) for h in range(3000)]  # as many as a message gives
    assert store.learn(-5, hashes, spam=True)
    got = store.counts(hashes)
    assert len(got) == 3000 and set(got.values()) == {(1, 0)}


def test_concurrent_learning_counts_exactly(factory: Factory) -> None:
    dbs = [factory() for _ in range(4)]

    def learn(i: int) -> None:
        store = dbs[i % 4].scope("u@example.test")
        for k in range(25):
            store.learn(i * 1000 + k, [1, 2, k + 10], spam=bool(k % 2))

    threads = [threading.Thread(target=learn, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = dbs[0].scope("u@example.test")
    assert store.totals() == (8 * 12, 8 * 13)
    assert store.counts([1])[1] == (96, 104)


def test_classifier_scores_agree_across_stores(factory: Factory) -> None:
    from test_spam_bayes import _reference_scores, corpus, trained

    b = trained(factory().scope(), 60, 50)
    spam, ham = corpus(5, seed=3)
    assert [round(b.score(m), 6) for m in spam + ham] == [
        round(x, 6) for x in _reference_scores(spam + ham)
    ]


def test_first_release_database_becomes_the_global_scope(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE tokens (h INTEGER PRIMARY KEY, spam INTEGER NOT NULL, ham INTEGER NOT NULL);
        CREATE TABLE seen (key INTEGER PRIMARY KEY, spam INTEGER NOT NULL);
        CREATE TABLE totals (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
        INSERT INTO tokens VALUES (1, 3, 0), (2, 1, 2);
        INSERT INTO seen VALUES (50, 1), (51, 0);
        INSERT INTO totals VALUES ('spam', 3), ('ham', 2);
        """
    )
    old.commit()
    old.close()
    db = SqliteTokenDB(path)
    store = db.scope()
    assert store.totals() == (3, 2)
    assert store.counts([1, 2]) == {1: (3, 0), 2: (1, 2)}
    assert not store.learn(50, [1], spam=True)  # learnt before: still known
    db.close()
    again = SqliteTokenDB(path)  # opening once more changes nothing
    assert again.scope().totals() == (3, 2)
    again.close()


def test_open_tokens_follows_state_url(tmp_path: Path, redis_server: RedisServer) -> None:
    sqlite_db = open_tokens("", tmp_path / "bayes.sqlite3")
    redis_db = open_tokens(redis_server.url, tmp_path / "unused.sqlite3")
    assert isinstance(sqlite_db, SqliteTokenDB) and isinstance(redis_db, RedisTokenDB)
    assert not (tmp_path / "unused.sqlite3").exists()
    sqlite_db.close()
    redis_db.close()


def test_two_nodes_share_a_users_classifier_through_redis(redis_server: RedisServer) -> None:
    from test_spam_bayes import corpus

    node1 = Classifiers(RedisTokenDB(redis_server.url, prefix="n:"), user_min=3)
    node2 = Classifiers(RedisTokenDB(redis_server.url, prefix="n:"), user_min=3)
    spam, ham = corpus(3)
    for s, h in zip(spam, ham, strict=True):
        node1.learn_for_user("carol@example.test", s, True)
        node1.learn_for_user("carol@example.test", h, False)
    whose, bayes = node2.for_recipient("carol@example.test")
    assert whose == "user" and isinstance(bayes, Bayes)
    assert node2.global_.store.totals() == (3, 3)
    node1.close()
    node2.close()
