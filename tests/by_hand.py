"""The reference started by hand and described in TOML, as an operator describes a mail host.

For meta-tests of the conformance suite that need a real IMAP and POP3 server behind a
target file (``--mailspec-target``) rather than the in-process default target.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from reference.testing import ReferenceServer

__all__ = ["ALICE", "INNER", "inner_ini", "reference", "target_toml"]

# Options for the inner pytester runs: no cache, none of the heavy plugins.
INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust")
ALICE = ("alice@example.test", "alice-password")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    """A reference with the domain example.test and one account, ALICE."""
    with ReferenceServer(tmp_path_factory.mktemp("ref")) as ref:
        ref.add_domain("example.test")
        ref.add_user(*ALICE)
        yield ref


@pytest.fixture
def inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def target_toml(ref: ReferenceServer, endpoints: Mapping[str, str], account: bool = True) -> str:
    """A target file offering ``endpoints`` (role -> URL) and, unless told, ALICE."""
    lines = ['name = "by-hand"', 'domain = "example.test"', "", "[endpoints]"]
    lines += [f'{role} = "{url}"' for role, url in endpoints.items()]
    if account:
        lines += ["[accounts.primary]", f'address = "{ALICE[0]}"', f'password = "{ALICE[1]}"']
    lines += ["[tls]", f'cafile = "{ref.cafile}"', f'server_name = "{ref.hostname}"']
    return "\n".join(lines) + "\n"
