"""reference.imap's public names: what the rest of the platform imports from the package."""

from __future__ import annotations

import reference.imap
import reference.imap.server

PUBLIC = ["Command", "ImapServer", "ParseError", "parse_command", "searchable_text"]


def test_all_lists_the_public_names() -> None:
    assert sorted(reference.imap.__all__) == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in reference.imap.__all__:
        assert getattr(reference.imap, name).__module__.startswith("reference.imap.")


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from reference.imap import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == PUBLIC


def test_the_server_module_still_offers_the_server() -> None:
    # reference.app and older callers import it from the module, not the package.
    assert reference.imap.server.ImapServer is reference.imap.ImapServer
