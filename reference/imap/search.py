"""Evaluation of parsed SEARCH keys against one message (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from reference.imap.parser import SearchKey, SequenceSet

_FLAG_OF = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "SEEN": "\\Seen",
}


@dataclass(frozen=True)
class Candidate:
    """What a search key may look at: numbers, flags, size (no content yet)."""

    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    exists: int  # message count, what "*" means for sequence numbers
    largest_uid: int  # what "*" means for UIDs


def matches(key: SearchKey, m: Candidate) -> bool:
    """Whether message ``m`` satisfies ``key`` (RFC 9051 6.4.4)."""
    name = key.name
    if name == "ALL":
        return True
    if name in _FLAG_OF:
        return _FLAG_OF[name] in m.flags
    if name.startswith("UN") and name[2:] in _FLAG_OF:
        return _FLAG_OF[name[2:]] not in m.flags
    if name == "KEYWORD":
        return key.value in m.flags
    if name == "UNKEYWORD":
        return key.value not in m.flags
    if name == "SEQ" and isinstance(key.value, SequenceSet):
        return key.value.contains(m.seq, m.exists)
    if name == "UID" and isinstance(key.value, SequenceSet):
        return key.value.contains(m.uid, m.largest_uid)
    if name == "LARGER" and isinstance(key.value, int):
        return m.size > key.value
    if name == "SMALLER" and isinstance(key.value, int):
        return m.size < key.value
    if name == "NOT":
        return not matches(key.keys[0], m)
    if name == "OR":
        return matches(key.keys[0], m) or matches(key.keys[1], m)
    if name == "AND":
        return all(matches(k, m) for k in key.keys)
    raise ValueError(f"unknown search key {name}")
