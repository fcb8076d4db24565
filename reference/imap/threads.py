"""SORT and THREAD values (RFC 5256, RFC 5957): base subjects, sort keys and the two
threading algorithms, over plain per-message facts (pure)."""

from __future__ import annotations

import email.utils
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reference.imap import addresses
from reference.imap.search import decoded

_WSP = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:\(fwd\)| )\Z", re.IGNORECASE)  # RFC 5256 5 subj-trailer
_BLOB = r"\[[^\[\]]*\] *"
# RFC 5256 5: subj-leader = (*subj-blob subj-refwd) / WSP; subj-refwd = ("re" / ("fw" ["d"]))
# *WSP [subj-blob] ":"
_LEADER = re.compile(rf"(?:(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:| )", re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)
_MSG_ID = re.compile(r"<\s*([^<>\s@]+@[^<>\s]+?)\s*>")


@dataclass(frozen=True)
class Subject:
    """A subject reduced to its base (RFC 5256 2.1), and whether reducing it removed a reply
    or forward marker (what the REFERENCES algorithm's step 5 asks)."""

    base: str
    reply: bool


def base_subject(raw: str) -> Subject:
    """RFC 5256 2.1: the base subject, upper-cased for i;ascii-casemap comparison."""
    text = _WSP.sub(" ", decoded(raw))  # (1) decoded, whitespace runs as one space
    reply = False
    while True:
        while (m := _TRAILER.search(text)) is not None:  # (2)
            reply |= m.group(0) != " "
            text = text[: m.start()]
        while True:  # (3)-(5)
            before = text
            while (m := _LEADER.match(text)) is not None and m.end() > 0:
                reply |= m.group(0) != " "
                text = text[m.end() :]
            m = _LEADING_BLOB.match(text)
            if m is not None and text[m.end() :]:  # (4): only when something is left
                text = text[m.end() :]
            if text == before:
                break
        # (6) [fwd: ...] wrapped around the whole subject: unwrap and start again.
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text, reply = text[5:-1], True
            continue
        return Subject(text.strip(" ").upper(), reply)


@dataclass
class Facts:
    """What SORT and THREAD look at in one message."""

    seq: int
    uid: int
    size: int
    internaldate: float
    header: list[tuple[str, str]]

    def get(self, name: str) -> str:
        return next((v for n, v in self.header if n == name), "")

    def sent(self) -> float:
        """RFC 5256 2.2: the Date field in UTC; the internal date when it has none valid."""
        value = self.get("date")
        if value:
            try:
                return email.utils.parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
        return self.internaldate


def _first_address(value: str) -> addresses.Address | None:
    """The first address; a group's start counts, its name as the mailbox (as Dovecot)."""
    return next((a for a in addresses.parse(value) if a.mailbox is not None), None)


def _mailbox_of(value: str) -> str:
    """RFC 5256 3: the addr-mailbox of the first address, for FROM, TO and CC."""
    first = _first_address(value)
    return (first.mailbox or "").upper() if first is not None else ""


def _display_of(value: str) -> str:
    """RFC 5957: the display name of the first address, else its addr-spec."""
    first = _first_address(value)
    if first is None:
        return ""
    name = decoded(first.name) if first.name else ""
    spec = f"{first.mailbox}@{first.host}" if first.host else first.mailbox or ""
    return (name or spec).casefold()


def sort_key(facts: Facts, key: str) -> str | float | int:
    if key == "ARRIVAL":
        return facts.internaldate
    if key == "DATE":
        return facts.sent()
    if key == "SIZE":
        return facts.size
    if key == "SUBJECT":
        return base_subject(facts.get("subject")).base
    if key in ("FROM", "TO", "CC"):
        return _mailbox_of(facts.get(key.lower()))
    if key in ("DISPLAYFROM", "DISPLAYTO"):
        return _display_of(facts.get(key.removeprefix("DISPLAY").lower()))
    raise ValueError(f"unknown sort key {key}")


def sort(messages: Iterable[Facts], criteria: Sequence[tuple[str, bool]]) -> list[Facts]:
    """RFC 5256 3: by each criterion in turn (REVERSE reversing that one), ties by sequence
    number, ascending whatever the criteria."""
    ordered = sorted(messages, key=lambda m: m.seq)
    for key, reverse in reversed(criteria):  # stable sorts, least significant key first
        ordered.sort(key=lambda m, k=key: sort_key(m, k), reverse=reverse)  # type: ignore[misc]
    return ordered


# -- THREAD -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A message in a thread tree; ``message`` is None for a dummy (RFC 5256 4)."""

    message: Facts | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def date_key(self) -> tuple[float, int]:
        """RFC 5256 4 (4)/(6): sent date, ties by sequence; a dummy sorts as its first child."""
        node: Node = self
        while node.message is None and node.children:
            node = node.children[0]
        if node.message is None:
            return (0.0, 0)
        return (node.message.sent(), node.message.seq)

    def adopt(self, child: Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def ancestor_of(self, other: Node) -> bool:
        node: Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False


def render(roots: Sequence[Node], number: str) -> bytes:
    """The THREAD response's data: ``(1 2)(3 (4)(5))``, ``number`` "seq" or "uid"."""

    def chain(node: Node) -> str:
        parts = [str(getattr(node.message, number))] if node.message is not None else []
        if len(node.children) == 1 and node.message is not None:
            parts.append(chain(node.children[0]))
        elif node.children:
            parts.append("".join(f"({chain(c)})" for c in node.children))
        return " ".join(parts)

    return "".join(f"({chain(root)})" for root in roots).encode()


def ordered_subject(messages: Iterable[Facts]) -> list[Node]:
    """RFC 5256 3 ORDEREDSUBJECT: messages sorted by base subject then sent date; each run of
    one subject is a thread, its first message the parent of the others; threads in the
    order of their first messages' sent dates."""
    ordered = sorted(messages, key=lambda m: (base_subject(m.get("subject")).base, m.sent(), m.seq))
    roots: list[Node] = []
    last: str | None = None
    for facts in ordered:
        subject = base_subject(facts.get("subject")).base
        if roots and subject == last:
            roots[-1].adopt(Node(facts))
        else:
            roots.append(Node(facts))
        last = subject
    roots.sort(key=Node.date_key)
    return roots


def _ids(value: str) -> list[str]:
    return _MSG_ID.findall(value)


def references(messages: Iterable[Facts]) -> list[Node]:
    """RFC 5256 4 REFERENCES (after Jamie Zawinski's algorithm), step by step."""
    table: dict[str, Node] = {}
    ordered = sorted(messages, key=lambda m: m.seq)
    for facts in ordered:  # (1)
        own = _ids(facts.get("message-id"))
        node = Node(facts)
        if own and (own[0] not in table or table[own[0]].message is None):
            if own[0] in table:  # a dummy made by an earlier reference: this is the message
                dummy = table[own[0]]
                node.children, node.parent = dummy.children, dummy.parent
                for child in node.children:
                    child.parent = node
                if dummy.parent is not None:
                    siblings = dummy.parent.children
                    siblings[siblings.index(dummy)] = node
            table[own[0]] = node
        # else: no Message-ID, or a duplicate: a unique one, reachable from no reference
        refs = _ids(facts.get("references")) or _ids(facts.get("in-reply-to"))[:1]
        chain = [table.setdefault(ref, Node()) for ref in refs]
        for parent, child in itertools.pairwise(chain):  # (1A)
            if child.parent is None and parent is not child and not child.ancestor_of(parent):
                parent.adopt(child)
        if node.parent is not None:  # (1B): the last reference is the parent
            node.parent.children.remove(node)
            node.parent = None
        if chain and chain[-1] is not node and not node.ancestor_of(chain[-1]):
            chain[-1].adopt(node)
    seen: set[int] = set()
    roots: list[Node] = []
    for node in table.values():  # (2): every node without a parent, each once
        top = node
        while top.parent is not None:
            top = top.parent
        if id(top) not in seen:
            seen.add(id(top))
            roots.append(top)
    # Messages with no Message-ID (or a duplicate one) hanging under no reference.
    placed = {id(n.message) for n in _walk(roots)}
    roots += [Node(f) for f in ordered if id(f) not in placed]
    roots = _prune(roots, top_level=True)  # (3)
    for root in roots:
        if root.message is None:
            root.children.sort(key=Node.date_key)
    roots.sort(key=Node.date_key)  # (4)
    roots = _gather_subjects(roots)  # (5)
    _sort_siblings(roots)  # (6)
    return roots


def _walk(nodes: Iterable[Node]) -> Iterable[Node]:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _prune(nodes: list[Node], *, top_level: bool) -> list[Node]:
    """(3): dummies without children go; others give their children to this level, unless
    that puts several children at the top."""
    out: list[Node] = []
    for node in nodes:
        node.children = _prune(node.children, top_level=False)
        for child in node.children:
            child.parent = node
        if node.message is None:
            if not node.children:
                continue
            if not top_level or len(node.children) == 1:
                for child in node.children:
                    child.parent = None
                out.extend(_prune(node.children, top_level=top_level))
                continue
        out.append(node)
    return out


def _thread_subject(node: Node) -> Subject | None:
    source = node.message if node.message is not None else node.children[0].message
    if source is None:
        return None
    subject = base_subject(source.get("subject"))
    return subject if subject.base else None


def _gather_subjects(roots: list[Node]) -> list[Node]:
    """(5): threads whose first messages have the same base subject are merged."""
    table: dict[str, Node] = {}
    for root in roots:  # (5B)
        subject = _thread_subject(root)
        if subject is None:
            continue
        held = table.get(subject.base)
        replaces = held is not None and held.message is not None
        if held is None or (
            replaces and (root.message is None or (_is_reply(held) and not _is_reply(root)))
        ):
            table[subject.base] = root
    out: list[Node] = []
    for root in roots:  # (5C)
        subject = _thread_subject(root)
        held = table.get(subject.base) if subject is not None else None
        if subject is None or held is None or held is root:
            out.append(root)
            continue
        if held.message is None and root.message is None:
            for child in list(root.children):
                held.adopt(child)
        elif held.message is None or (_is_reply(root) and not _is_reply(held)):
            held.adopt(root)
        else:
            dummy = Node()
            index = out.index(held) if held in out else None
            dummy.adopt(held)
            dummy.adopt(root)
            table[subject.base] = dummy
            if index is not None:
                out[index] = dummy
            else:  # the held thread comes later in the root list
                roots[roots.index(held)] = dummy
    return out


def _is_reply(node: Node) -> bool:
    return node.message is not None and base_subject(node.message.get("subject")).reply


def _sort_siblings(nodes: list[Node]) -> None:
    """(6): every set of siblings by sent date, the deepest first."""
    for node in nodes:
        _sort_siblings(node.children)
        node.children.sort(key=Node.date_key)
    nodes.sort(key=Node.date_key)
