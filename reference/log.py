"""Structured logging: one line per event, key=value, carrying the queue id where there is one."""

from __future__ import annotations

import logging
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_.:@/+<>=-]+$")


def _fmt(value: Any) -> str:
    s = str(value)
    if s and _BARE.match(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event=name k=v …``; values with spaces or quotes are quoted."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={name}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    logger.log(level, " ".join(parts))


def setup(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # aiosmtpd logs every command at INFO; keep its chatter at WARNING.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
