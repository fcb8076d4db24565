"""Several writers making a domain's first DKIM keys at once all end up with the same keys."""

from __future__ import annotations

import threading
from pathlib import Path

from reference.auth.keys import KeyStore


def test_concurrent_first_keys_agree(tmp_path: Path) -> None:
    stores = [KeyStore(tmp_path) for _ in range(6)]  # as six nodes sharing data_dir
    pems: list[list[bytes]] = [[] for _ in stores]
    errors: list[Exception] = []

    def make(i: int) -> None:
        try:
            pems[i] = [k.private_pem() for k in stores[i].generate("example.test", "mailspec")]
        except Exception as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert all(p == pems[0] and len(p) == 2 for p in pems)
    assert not list(tmp_path.rglob("*.tmp"))
