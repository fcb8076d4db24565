"""The service layer the command line, the admin API and the panel all call: its refusals
keep their template for translation, deleting mail is never a default, a form's spam scores
replace the account's own, and what the panel shows (storage, branding) comes from here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference import config as config_mod
from reference.directory import Directory
from reference.service import Admin, Conflict, Invalid, NotFound

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    directory = Directory(tmp_path / "directory.sqlite3")
    a = Admin(directory, config_mod.load(data_dir=str(tmp_path)))
    for domain in ("a.test", "b.test"):
        a.add_domain(domain)
    for user in ("alice@a.test", "keeper@a.test", "bob@b.test"):
        a.add_account(user, "pw")
    yield a
    a.close()
    directory.close()


def test_a_refusal_keeps_its_template_and_values(admin: Admin) -> None:
    with pytest.raises(NotFound) as found:
        admin.account("nobody@a.test")
    e = found.value
    assert (str(e), e.field) == ("no such account: nobody@a.test", "address")
    assert (e.template, e.values) == ("no such account: %(address)s", {"address": "nobody@a.test"})
    # One the directory made, passed on by the service, naming the service's field.
    with pytest.raises(Invalid) as bad:
        admin.set_forwarding("alice@a.test", ["not an address"], keep=True)
    assert bad.value.field == "targets.0" and bad.value.template == "not an address: %(address)r"
    assert str(bad.value) == "not an address: 'not an address'"
    with pytest.raises(Conflict) as taken:
        admin.add_account("Alice@A.test", "pw")
    assert str(taken.value) == "alice@a.test exists already"


def test_deleting_an_account_needs_a_choice_for_its_mail(admin: Admin) -> None:
    admin.mail.deliver("alice@a.test", b"Subject: keep\r\n\r\nme\r\n")
    with pytest.raises(Invalid, match="say what happens to the mail") as none:
        admin.delete_account("alice@a.test")
    assert none.value.field == "archive_to"
    with pytest.raises(Invalid, match="not both"):
        admin.delete_account("alice@a.test", archive_to="keeper@a.test", remove_mail=True)
    with pytest.raises(NotFound) as missing:
        admin.delete_account("alice@a.test", archive_to="nobody@a.test")
    assert missing.value.field == "archive_to"
    assert admin.storage("alice@a.test").messages == 1  # nothing happened
    retired = admin.delete_account("alice@a.test", archive_to="keeper@a.test")
    assert (retired.messages, retired.archived_in) == (1, "Archive/alice@a_test")
    assert admin.storage("keeper@a.test").messages == 1


def test_deleting_a_domain(admin: Admin) -> None:
    with pytest.raises(Invalid, match="say what happens to the mail"):
        admin.delete_domain("b.test")
    with pytest.raises(Invalid, match="being deleted itself") as itself:
        admin.delete_domain("b.test", archive_to="bob@b.test")
    assert itself.value.field == "archive_to"
    with pytest.raises(NotFound) as gone:
        admin.delete_domain("c.test", remove_mail=True)
    assert gone.value.field == "domain"
    assert [r.address for r in admin.delete_domain("B.test", remove_mail=True)] == ["bob@b.test"]
    assert admin.domains() == ["a.test"]
    admin.add_domain("empty.test")
    assert admin.delete_domain("empty.test") == []  # no accounts: no mail to decide about


def test_a_form_replaces_the_scores_an_api_call_keeps_the_other(admin: Admin) -> None:
    admin.set_spam_thresholds("alice@a.test", reject=9, junk=3)
    kept = admin.set_spam_thresholds("alice@a.test", reject=8)
    assert (kept.own_reject, kept.own_junk) == (8, 3)
    replaced = admin.set_spam_thresholds("alice@a.test", reject=7, replace=True)
    assert (replaced.own_reject, replaced.own_junk, replaced.junk_from) == (7, None, "config")
    with pytest.raises(Invalid) as refused:
        admin.set_spam_thresholds("alice@a.test", reject=4, junk=6, replace=True)
    assert refused.value.field == "junk_score"
    assert admin.spam_thresholds("alice@a.test").own_reject == 7  # kept what it had
    cleared = admin.set_spam_thresholds("alice@a.test", replace=True)
    assert (cleared.own_reject, cleared.reject_from) == (None, "config")
    assert admin.directory.spam_settings("alice@a.test") == {}


def test_branding(admin: Admin) -> None:
    with pytest.raises(Invalid) as name:
        admin.set_branding("a.test", "  ")
    assert name.value.field == "name"
    with pytest.raises(Invalid, match="PNG or JPEG"):
        admin.set_branding("a.test", "Shop", b"<svg/>")
    with pytest.raises(NotFound):
        admin.set_branding("c.test", "Shop")
    assert admin.set_branding("A.test", " Shop  Mail ", PNG).name == "Shop Mail"
    assert admin.logo("a.test") == (PNG, "image/png")
    assert admin.set_branding("a.test", "Shop", b"").logo_type is None
    assert admin.logo("a.test") is None and admin.branding("b.test") is None
