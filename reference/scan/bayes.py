"""A Bayesian token classifier (Graham's tokens, Robinson's probabilities, Fisher's chi-square).

Trained by users moving mail into and out of Junk over IMAP (:func:`junk_trainer`, the
IMAP server's ``on_junk`` hook) and by ``mailspec spam learn``; asked by the spam check.
A classifier says nothing until it has learnt ``min_spam`` spam and ``min_ham`` ham
messages (200 each by default, as SpamAssassin does): a young database is noise.

:class:`Classifiers` holds the platform's classifier and one per account, over one token
database (``reference.state.tokens``: SQLite per node, Redis across nodes). A user's
Junk moves teach both their own and the global one; a message for one local recipient
is scored with that user's classifier once it has learnt enough, else with the global.

Tokens are stored as 64-bit hashes, never as words: the database holds no mail text.
A message learnt twice is learnt once; learnt again as the other class, it moves.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable

from reference.auth.psl import default_list
from reference.log import event
from reference.scan.analysis import Parsed, parse
from reference.scan.links import registered_domain
from reference.scan.rules import Hit
from reference.state.tokens import GLOBAL, MemoryTokenDB, MemoryTokens, TokenDB, TokenStore

__all__ = [
    "BANDS",
    "Bayes",
    "Classifiers",
    "MemoryTokenDB",
    "MemoryTokens",
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

# The probability bands that become score, as SpamAssassin's BAYES_* rules, plus a band for
# near-certainty worth the junk threshold on its own (Rspamd's BAYES_SPAM reaches 5.1):
# mail no rule notices but Bayes is sure of is filed into Junk, never refused by Bayes alone.
BANDS: tuple[tuple[float, float, str, float], ...] = (
    (0.999, 1.01, "BAYES_999", 5.0),
    (0.99, 0.999, "BAYES_99", 3.5),
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
    """``train(message, spam)`` and ``score(message) -> probability of spam``, over one store.

    Thread-safe (the IMAP hook calls it from worker threads); synchronous (the spam check
    calls it through ``asyncio.to_thread``).
    """

    def __init__(self, store: TokenStore, *, min_spam: int = 200, min_ham: int = 200) -> None:
        self.store = store
        self.min_spam = min_spam
        self.min_ham = min_ham

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


class Classifiers:
    """The platform's classifier and each account's own, over one token database.

    ``user_min`` is what a user's own classifier must have learnt of each class before it
    replaces the global one for their mail.
    """

    def __init__(
        self, db: TokenDB, *, min_spam: int = 200, min_ham: int = 200, user_min: int = 200
    ) -> None:
        self.db = db
        self.min_spam = min_spam
        self.min_ham = min_ham
        self.user_min = user_min
        self.global_ = Bayes(db.scope(GLOBAL), min_spam=min_spam, min_ham=min_ham)

    @classmethod
    def memory(cls, **kw: int) -> Classifiers:
        """In this process only: for tests and one-off runs."""
        return cls(MemoryTokenDB(), **kw)

    def user(self, address: str) -> Bayes:
        """``address``'s own classifier (empty until something is learnt for it)."""
        if not address:
            return self.global_
        return Bayes(self.db.scope(address), min_spam=self.user_min, min_ham=self.user_min)

    def for_recipient(self, address: str | None) -> tuple[str, Bayes]:
        """The classifier to score a message for ``address`` with: ("user", theirs) once it
        is ready, else ("global", the platform's). None: a message for several users."""
        if address:
            own = self.user(address)
            if own.ready:
                return "user", own
        return "global", self.global_

    def learn_for_user(self, address: str, message: bytes, spam: bool) -> tuple[bool, bool]:
        """What a user filed: teaches their classifier and the global one (changed, changed)."""
        p = parse(message)
        mine = self.user(address).train_parsed(p, spam, message) if address else False
        return mine, self.global_.train_parsed(p, spam, message)

    def close(self) -> None:
        self.db.close()


def hit(probability: float) -> Hit | None:
    """The BAYES_* rule a probability falls in (None in the undecided middle)."""
    for low, high, name, weight in BANDS:
        if low <= probability < high:
            return Hit(name, weight, f"{probability:.3f}")
    return None


def junk_trainer(classifiers: Classifiers) -> Callable[[str, bytes, bool], None]:
    """The IMAP server's ``on_junk(address, message, is_spam)``: learn what users file, in
    their own classifier and in the global one."""

    def on_junk(address: str, message: bytes, is_spam: bool) -> None:
        mine, shared = classifiers.learn_for_user(address, message, is_spam)
        event(log, "bayes.learnt", user=address, spam=is_spam, user_changed=mine, changed=shared)

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
