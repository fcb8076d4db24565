"""Modified UTF-7 mailbox names (RFC 3501 5.1.3), for IMAP4rev1 clients (pure)."""

from __future__ import annotations

import base64
import binascii


def encode(name: str) -> str:
    """``Entwürfe`` -> ``Entw&APw-rfe``; printable ASCII stays, ``&`` becomes ``&-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """The inverse of :func:`encode`; raises ValueError for what no encoder produces."""
    out: list[str] = []
    i = 0
    while i < len(name):
        char = name[i]
        if not 0x20 <= ord(char) <= 0x7E:
            raise ValueError("modified UTF-7 is printable ASCII")
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = name.find("-", i)
        if end < 0:
            raise ValueError("unterminated shift sequence")
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                text = raw.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ValueError(f"bad shift sequence {chunk!r}") from e
            if encode(text) != "&" + chunk + "-":
                raise ValueError(f"non-canonical shift sequence {chunk!r}")
            out.append(text)
        i = end + 1
    return "".join(out)
