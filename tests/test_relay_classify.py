"""The relay's classifier agrees with the fake MXs' catalogue of real receiver replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes.mx import catalogue
from reference.delivery.classify import Action, Category, classify

FILL = {
    "ip": "127.0.1.5",
    "helo": "out.example.test",
    "hostname": "mx.gmail.test",
    "sender": "a@example.test",
    "sender_domain": "example.test",
    "rcpt": "b@gmail.test",
    "rcpt_domain": "gmail.test",
}


@pytest.mark.parametrize("name", sorted(catalogue.ENTRIES))
def test_every_catalogue_reply_is_classified_as_its_category(name: str) -> None:
    entry = catalogue.ENTRIES[name]
    reply = entry.reply.fill(FILL)
    got = classify(reply.code, reply.enhanced, reply.text.replace("\n", " "))
    assert got.category.value == entry.category.value, name
    if entry.category.value in ("blocklist", "reputation"):
        assert got.action is Action.REPUTATION
    elif entry.code >= 500:
        assert got.action is Action.PERMANENT
    else:
        assert got.action is Action.TEMPFAIL


def test_success_and_fallbacks() -> None:
    assert classify(250, "2.0.0", "ok").action is Action.DELIVERED
    assert classify(451, "", "whatever").category is Category.SERVER
    assert classify(554, "", "no").category is Category.POLICY
    assert classify(550, "5.1.1", "go away").category is Category.RECIPIENT


@given(st.integers(400, 599), st.text(max_size=300))
def test_any_text_classifies_without_error(code: int, text: str) -> None:
    got = classify(code, "", text)
    assert got.action is not Action.DELIVERED
