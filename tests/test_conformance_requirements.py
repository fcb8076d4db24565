"""Requirement marks, capability names, stable ids and the report's sort order."""

from __future__ import annotations

import pytest

from conformance.requirements import (
    Level,
    Requirement,
    assign_ids,
    clause_key,
    needed_capabilities,
    needs,
    requirement,
    source_key,
)


def test_requirement_mark_carries_its_arguments() -> None:
    mark = requirement(
        "RFC5321", "4.5.2", "must", "dot-stuffing   is removed", needs=["clock"]
    ).mark
    assert mark.name == "requirement"
    assert mark.args == ("RFC5321", "4.5.2", "MUST", "dot-stuffing is removed")
    assert mark.kwargs == {"needs": ("clock",)}
    req = Requirement.from_mark(mark)
    assert req == Requirement("RFC5321", "4.5.2", Level.MUST, "dot-stuffing is removed")
    assert req.base_id == "RFC5321-4.5.2"


def test_requirement_from_keyword_mark() -> None:
    mark = pytest.mark.requirement(
        source="PLATFORM", clause="outbound.ratelimit", level="SHOULD", title="t"
    ).mark
    assert Requirement.from_mark(mark).level is Level.SHOULD


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("RFC 5321", "4.5.2", "MUST", "t"), "expected RFCnnnn or PLATFORM"),
        (("rfc5321", "4.5.2", "MUST", "t"), "expected RFCnnnn or PLATFORM"),
        (("RFC5321", "4.5 .2", "MUST", "t"), "expected a section"),
        (("RFC5321", "", "MUST", "t"), "expected a section"),
        (("RFC5321", "4.5.2", "MUST NOT", "t"), "expected MUST, SHOULD or MAY"),
        (("RFC5321", "4.5.2", "MUST", "  "), "title is empty"),
    ],
)
def test_bad_requirements_are_refused_at_import(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        requirement(*args)


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown capability 'fake_dns'"):
        needs("fake_dns")
    with pytest.raises(ValueError, match="unknown capability"):
        requirement("RFC5321", "4.5.2", "MUST", "t", needs=("time-travel",))


def test_needed_capabilities_from_both_marks() -> None:
    marks = [
        requirement("RFC5321", "4.5.2", "MUST", "t", needs=("clock",)).mark,
        needs("fake-dns", "admin").mark,
        pytest.mark.other().mark,
    ]
    assert needed_capabilities(marks) == {"clock", "fake-dns", "admin"}
    by_hand = pytest.mark.requirement("RFC5321", "4.5.2", "MUST", "t", needs="clock").mark
    assert needed_capabilities([by_hand]) == {"clock"}


def req(clause: str, title: str, source: str = "RFC5321") -> Requirement:
    return Requirement(source, clause, Level.MUST, title)


def test_ids_plain_when_alone_and_suffixed_when_shared() -> None:
    a = req("4.1.4", "RCPT before MAIL gets 503")
    b = req("4.1.4", "EHLO resets the transaction")
    c = req("4.5.2", "dot-stuffing is removed")
    d = req("4.5.2", "Dot-stuffing  is removed")  # the same requirement, written differently
    ids = assign_ids([a, b, c, d, a])
    assert ids[c.key] == ids[d.key] == "RFC5321-4.5.2"
    assert ids[a.key] != ids[b.key]
    assert ids[a.key].startswith("RFC5321-4.1.4-") and len(ids[a.key]) == len("RFC5321-4.1.4-") + 6


def test_ids_do_not_depend_on_the_other_members_or_their_order() -> None:
    a = req("4.1.4", "RCPT before MAIL gets 503")
    b = req("4.1.4", "EHLO resets the transaction")
    c = req("4.1.4", "DATA before RCPT gets 503")
    first = assign_ids([a, b])
    assert assign_ids([b, a]) == first
    assert assign_ids([c, b, a])[a.key] == first[a.key]


def test_same_clause_in_two_sources_is_two_ids() -> None:
    ids = assign_ids([req("4.2", "x", "RFC5321"), req("4.2", "y", "RFC3207")])
    assert sorted(ids.values()) == ["RFC3207-4.2", "RFC5321-4.2"]


def test_sort_keys() -> None:
    clauses = ["4.1.1.10", "4.1.1.9", "4.10", "4.2", "10", "4.1.1", "3"]
    assert sorted(clauses, key=clause_key) == [
        "3",
        "4.1.1",
        "4.1.1.9",
        "4.1.1.10",
        "4.2",
        "4.10",
        "10",
    ]
    sources = ["PLATFORM", "RFC7208", "RFC821", "RFC5321"]
    assert sorted(sources, key=source_key) == ["RFC821", "RFC5321", "RFC7208", "PLATFORM"]
    policies = ["outbound.ratelimit", "inbound.greylist", "inbound.dnsbl"]
    assert sorted(policies, key=clause_key) == [
        "inbound.dnsbl",
        "inbound.greylist",
        "outbound.ratelimit",
    ]
