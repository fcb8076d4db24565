"""The fake MX reply catalogue: every entry well-formed and rightly categorised; Reply values."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes.mx import Category, Reply, catalogue

SAMPLE = {
    "ip": "127.0.1.5",
    "helo": "relay.example.test",
    "hostname": "mx.gmail.test",
    "sender": "alice@example.test",
    "sender_domain": "example.test",
    "rcpt": "bob@gmail.test",
    "rcpt_domain": "gmail.test",
}
LINE = re.compile(r"(\d{3})([- ])([245]\.\d{1,3}\.\d{1,3}) (\S[\x20-\x7e]*)")

# An independent reading of each text, in the order a relay's classifier would try them.
CLASSIFIER = [
    (Category.AUTH, r"dmarc|unauthenticated|authentication"),
    (Category.TLS, r"starttls"),
    (Category.GREYLIST, r"greylist|^try again later$"),
    (Category.BLOCKLIST, r"block list|blocked using|spamhaus|spamcop|banned sending ip"),
    (
        Category.REPUTATION,
        r"reputation|complaints|permanently deferred|ip address has been blocked",
    ),
    (Category.RATE, r"rate limited|too quickly|server busy"),
    (Category.SPAM, r"unsolicited|spam"),
    (Category.RECIPIENT, r"does not exist|user unknown|not found|mailbox unavailable|account"),
    (Category.CAPACITY, r"storage|busy|size exceeds|closing transmission channel"),
    (Category.SERVER, r"local error"),
    (Category.POLICY, r"policy reasons|relay access denied"),
]


def classify(text: str) -> Category | None:
    flat = " ".join(text.split())
    return next((c for c, rx in CLASSIFIER if re.search(rx, flat, re.IGNORECASE)), None)


@pytest.mark.parametrize("name", sorted(catalogue.ENTRIES))
def test_entry_is_a_well_formed_reply_of_its_category(name: str) -> None:
    entry = catalogue.get(name)
    assert entry.name == name
    assert re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", name)
    assert name.rsplit(".", 1)[1] in (f"{entry.code // 100}xx", str(entry.code))
    assert entry.code in (421, 450, 451, 452, 530, 550, 552, 553, 554)  # RFC 5321 4.2.3
    reply = entry.reply.fill(SAMPLE)
    lines = reply.lines()
    for i, line in enumerate(lines):
        m = LINE.fullmatch(line)
        assert m, line
        assert int(m[1]) == entry.code and m[3] == entry.enhanced
        assert m[2] == ("-" if i < len(lines) - 1 else " ")  # RFC 5321 4.2.1
        assert len(line) + 2 <= 512  # RFC 5321 4.5.3.1.5: reply line with CRLF
        assert "{" not in line and "}" not in line
    assert entry.enhanced[0] == str(entry.code)[0]  # RFC 3463 2: same class
    assert reply.transient == (entry.code < 500)
    assert classify(reply.text) is entry.category
    if entry.category is Category.GREYLIST:
        assert reply.transient


def test_lookup_by_name_and_unknown_names() -> None:
    assert catalogue.reply("gmail.reputation.5xx").name == "gmail.reputation.5xx"
    assert catalogue.reply("gmail.reputation.5xx") == Reply(
        550, "5.7.1", catalogue.get("gmail.reputation.5xx").text
    )
    with pytest.raises(KeyError, match="known: "):
        catalogue.get("gmail.nonsense.5xx")


def test_every_category_and_big_receiver_is_covered() -> None:
    entries = catalogue.ENTRIES.values()
    assert {e.category for e in entries} == set(Category)
    for who in ("gmail", "outlook", "yahoo", "spamhaus"):
        codes = {e.code // 100 for e in entries if e.name.startswith(who + ".")}
        assert codes == {4, 5}, who


def test_reply_renders_multiline_and_fills_placeholders() -> None:
    reply = Reply(550, "5.7.1", "[{ip}] first\nsecond {unknown}")
    assert reply.fill({"ip": "127.0.1.5"}).wire() == (
        "550-5.7.1 [127.0.1.5] first\r\n550 5.7.1 second {unknown}"
    )
    assert Reply(220, "", "mx.test ESMTP").wire() == "220 mx.test ESMTP"
    assert str(Reply(451, "4.7.1", "Try again later")) == "451 4.7.1 Try again later"


@pytest.mark.parametrize(
    "text", ["", "hello", "99 1.2.3 x", "600 6.0.0 x", "550 4.7.1 class mismatch", "550 5.7.1 a\rb"]
)
def test_reply_parse_refuses_non_replies(text: str) -> None:
    with pytest.raises(ValueError):
        Reply.parse(text)


texts = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    code = draw(st.integers(200, 599))
    enhanced = f"{code // 100}.{draw(st.integers(0, 999))}.{draw(st.integers(0, 999))}"
    lines = draw(st.lists(texts.filter(bool), min_size=1, max_size=4))
    return Reply(code, enhanced, "\n".join(lines))


@given(replies())
def test_reply_parse_inverts_str(reply: Reply) -> None:
    assert Reply.parse(str(reply)) == reply
    assert len(reply.lines()) == reply.text.count("\n") + 1
