"""A Bayesian token classifier (Graham's tokens, Robinson's probabilities, Fisher's chi-square).

Trained by users moving mail into and out of Junk over IMAP (:func:`junk_trainer`, the
IMAP server's ``on_junk`` hook) and by ``mailspec spam train``; asked by the spam check.
It says nothing until it has learnt ``min_spam`` spam and ``min_ham`` ham messages
(200 each by default, as SpamAssassin does): a young database is noise.

Storage: a token database of its own (``TokenStore``), SQLite under ``data_dir`` by
default, rather than the policy ``StateStore``. Training adds one to thousands of
counters at once and scoring reads hundreds: that wants one transaction with batched
statements, which the StateStore's get/put of single keys cannot give without a
protocol change in three stores (and would lose counts between processes). A Redis
``TokenStore`` (HINCRBY in a pipeline, HMGET) is the natural variant for clusters.

Tokens are stored as 64-bit hashes, never as words: the database holds no mail text.
A message learnt twice is learnt once; learnt again as the other class, it moves.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from reference.auth.psl import default_list
from reference.log import event
from reference.scan.spam import Hit, Parsed, parse, registered_domain

__all__ = [
    "BANDS",
    "Bayes",
    "MemoryTokens",
    "SqliteTokens",
    "TokenStore",
    "hit",
    "junk_trainer",
    "tokens",
    "train_all",
]

log = logging.getLogger("mailspec.bayes")

MAX_TOKENS = 3000  # distinct tokens taken from one message
MAX_TOKEN_TEXT = 128 << 10  # characters of text tokenised
# SpamBayes' defaults, which SpamAssassin's Bayes also follows.
UNKNOWN_STRENGTH = 0.45  # Robinson's s: how much an unseen token pulls to x
UNKNOWN_PROB = 0.5  # Robinson's x
MIN_STRENGTH = 0.1  # |f(w) - 0.5| below which a token is ignored
MAX_DISCRIMINATORS = 150

# The probability bands that become score, as SpamAssassin's BAYES_* rules.
BANDS: tuple[tuple[float, float, str, float], ...] = (
    (0.99, 1.01, "BAYES_99", 3.5),
    (0.95, 0.99, "BAYES_95", 3.0),
    (0.80, 0.95, "BAYES_80", 2.0),
    (0.60, 0.80, "BAYES_60", 1.0),
    (0.0, 0.01, "BAYES_00", -1.5),
    (0.01, 0.05, "BAYES_05", -0.5),
)


# -- tokens ------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_][\w'$€£.-]*[^\W_]|[^\W_]")


def tokens(p: Parsed) -> set[str]:
    """The tokens of a message: words of subject and body, link domains, sender domain,
    attachment types; long words become a length class (Graham's "skip" tokens)."""
    out: set[str] = set()

    def words(prefix: str, text: str) -> None:
        for w in _WORD.findall(text[:MAX_TOKEN_TEXT].lower()):
            if len(out) >= MAX_TOKENS:
                return
            if len(w) < 3:
                continue
            if len(w) > 20:
                out.add(f"{prefix}skip:{w[0]}{len(w) // 10 * 10}")
            else:
                out.add(prefix + w)

    words("s:", p.subject)
    words("", p.body)
    psl = default_list()
    for lk in p.links[:50]:
        if lk.host:
            out.add("url:" + registered_domain(lk.host, psl))
    _, at, domain = p.from_addr.rpartition("@")
    if at:
        out.add("from:" + domain)
    for a in p.attachments[:20]:
        out.add("ct:" + a.content_type)
        if "." in a.filename:
            out.add("ext:" + a.filename.rsplit(".", 1)[1].lower()[:10])
    if p.has_html and not p.has_plain:
        out.add("html-only")
    return out


def _hash(token: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(token.encode(), digest_size=8).digest(), "big", signed=True
    )


def _message_key(p: Parsed, raw: bytes) -> int:
    """What identifies a message across copies: its Message-ID, else its bytes."""
    mid = (p.header("message-id") or [""])[0].strip()
    return _hash("mid:" + mid) if mid else _hash("raw:" + raw[:65536].hex())


# -- storage -----------------------------------------------------------------------------------


class TokenStore(Protocol):
    """Token counts per class, learnt messages, totals; every method atomic."""

    def counts(self, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(spam, ham) counts of the hashes that have any."""
        ...

    def totals(self) -> tuple[int, int]:
        """(spam, ham) messages learnt."""
        ...

    def learn(self, key: int, hashes: Sequence[int], spam: bool) -> bool:
        """Learn a message once; True if anything changed."""
        ...

    def close(self) -> None: ...


class MemoryTokens:
    """For tests and one-off runs."""

    def __init__(self) -> None:
        self._tokens: dict[int, list[int]] = {}
        self._seen: dict[int, bool] = {}
        self._totals = [0, 0]
        self._lock = threading.Lock()

    def counts(self, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        with self._lock:
            return {h: (c[0], c[1]) for h in hashes if (c := self._tokens.get(h))}

    def totals(self) -> tuple[int, int]:
        return self._totals[0], self._totals[1]

    def learn(self, key: int, hashes: Sequence[int], spam: bool) -> bool:
        with self._lock:
            before = self._seen.get(key)
            if before is spam:
                return False
            if before is not None:
                self._add(hashes, before, -1)
            self._add(hashes, spam, +1)
            self._seen[key] = spam
            return True

    def _add(self, hashes: Sequence[int], spam: bool, delta: int) -> None:
        i = 0 if spam else 1
        self._totals[i] = max(0, self._totals[i] + delta)
        for h in hashes:
            c = self._tokens.setdefault(h, [0, 0])
            c[i] = max(0, c[i] + delta)

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    h INTEGER PRIMARY KEY, spam INTEGER NOT NULL, ham INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (key INTEGER PRIMARY KEY, spam INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS totals (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES ('spam', 0), ('ham', 0);
"""


class SqliteTokens:
    """``bayes.sqlite3`` under data_dir: shared by a node's processes (WAL, IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # counts, not mail: a lost tail is fine
        self._db.executescript(_SCHEMA)

    def counts(self, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        with self._lock:
            for i in range(0, len(hashes), 500):
                chunk = list(hashes[i : i + 500])
                marks = ",".join("?" * len(chunk))
                for h, s, n in self._db.execute(
                    f"SELECT h, spam, ham FROM tokens WHERE h IN ({marks})", chunk
                ):
                    out[int(h)] = (int(s), int(n))
        return out

    def totals(self) -> tuple[int, int]:
        with self._lock:
            rows = dict(self._db.execute("SELECT kind, n FROM totals").fetchall())
        return int(rows.get("spam", 0)), int(rows.get("ham", 0))

    def learn(self, key: int, hashes: Sequence[int], spam: bool) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT spam FROM seen WHERE key = ?", (key,)).fetchone()
                before = None if row is None else bool(row[0])
                if before is spam:
                    self._db.execute("COMMIT")
                    return False
                if before is not None:
                    self._add(hashes, before, -1)
                self._add(hashes, spam, +1)
                self._db.execute(
                    "INSERT OR REPLACE INTO seen(key, spam) VALUES (?, ?)", (key, int(spam))
                )
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _add(self, hashes: Sequence[int], spam: bool, delta: int) -> None:
        col = "spam" if spam else "ham"
        self._db.execute(f"UPDATE totals SET n = max(0, n + ?) WHERE kind = '{col}'", (delta,))
        if delta > 0:
            self._db.executemany(
                f"INSERT INTO tokens(h, spam, ham) VALUES (?, {int(spam)}, {int(not spam)}) "
                f"ON CONFLICT(h) DO UPDATE SET {col} = {col} + 1",
                [(h,) for h in hashes],
            )
        else:
            self._db.executemany(
                f"UPDATE tokens SET {col} = max(0, {col} - 1) WHERE h = ?", [(h,) for h in hashes]
            )
            self._db.execute("DELETE FROM tokens WHERE spam = 0 AND ham = 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- the classifier ----------------------------------------------------------------------------


def _chi2q(x2: float, v: int) -> float:
    """P(chi-square with v degrees of freedom >= x2), v even (Fisher's method)."""
    m = x2 / 2.0
    total = term = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


class Bayes:
    """``train(message, spam)`` and ``score(message) -> probability of spam``.

    Thread-safe (the IMAP hook calls it from worker threads); synchronous (the spam check
    calls it through ``asyncio.to_thread``).
    """

    def __init__(self, store: TokenStore, *, min_spam: int = 200, min_ham: int = 200) -> None:
        self.store = store
        self.min_spam = min_spam
        self.min_ham = min_ham

    @classmethod
    def open(cls, path: Path, *, min_spam: int = 200, min_ham: int = 200) -> Bayes:
        return cls(SqliteTokens(path), min_spam=min_spam, min_ham=min_ham)

    def close(self) -> None:
        self.store.close()

    @property
    def ready(self) -> bool:
        """Whether enough of each class has been learnt for the classifier to speak."""
        spam, ham = self.store.totals()
        return spam >= self.min_spam and ham >= self.min_ham

    def train(self, message: bytes, spam: bool) -> bool:
        """Learn ``message`` as spam or ham; False if it was already learnt so."""
        return self.train_parsed(parse(message), spam, message)

    def train_parsed(self, p: Parsed, spam: bool, raw: bytes = b"") -> bool:
        hashes = sorted({_hash(t) for t in tokens(p)})
        return self.store.learn(_message_key(p, raw), hashes, spam)

    def score(self, message: bytes) -> float:
        """The probability that ``message`` is spam; 0.5 (no opinion) until ready."""
        return self.score_parsed(parse(message))

    def score_parsed(self, p: Parsed) -> float:
        nspam, nham = self.store.totals()
        if nspam < self.min_spam or nham < self.min_ham:
            return 0.5
        hashes = [_hash(t) for t in tokens(p)]
        counts = self.store.counts(hashes)
        clues: list[float] = []
        for s, h in counts.values():
            spam_ratio = s / nspam
            ham_ratio = h / nham
            if spam_ratio + ham_ratio == 0:
                continue
            p_w = spam_ratio / (spam_ratio + ham_ratio)
            n = s + h
            f = (UNKNOWN_STRENGTH * UNKNOWN_PROB + n * p_w) / (UNKNOWN_STRENGTH + n)
            if abs(f - 0.5) >= MIN_STRENGTH:
                clues.append(f)
        if not clues:
            return 0.5
        clues.sort(key=lambda f: -abs(f - 0.5))
        clues = clues[:MAX_DISCRIMINATORS]
        n = len(clues)
        # Fisher: how unlikely these probabilities are if the tokens were random, both ways.
        spam_evidence = 1.0 - _chi2q(-2.0 * math.fsum(math.log(1.0 - f) for f in clues), 2 * n)
        ham_evidence = 1.0 - _chi2q(-2.0 * math.fsum(math.log(f) for f in clues), 2 * n)
        return (spam_evidence - ham_evidence + 1.0) / 2.0


def hit(probability: float) -> Hit | None:
    """The BAYES_* rule a probability falls in (None in the undecided middle)."""
    for low, high, name, weight in BANDS:
        if low <= probability < high:
            return Hit(name, weight, f"{probability:.3f}")
    return None


def junk_trainer(bayes: Bayes) -> Callable[[str, bytes, bool], None]:
    """The IMAP server's ``on_junk(address, message, is_spam)``: learn what users file."""

    def on_junk(address: str, message: bytes, is_spam: bool) -> None:
        changed = bayes.train(message, is_spam)
        event(log, "bayes.learnt", user=address, spam=is_spam, changed=changed)

    return on_junk


def train_all(bayes: Bayes, messages: Iterable[bytes], spam: bool) -> tuple[int, int]:
    """(learnt, already known) over many messages."""
    learnt = known = 0
    for m in messages:
        if bayes.train(m, spam):
            learnt += 1
        else:
            known += 1
    return learnt, known
