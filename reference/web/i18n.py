"""The panel's languages: gettext catalogues (``locale/<lang>/LC_MESSAGES/panel.po``) read
with Babel when the server starts, so a plain ``pip install .`` needs no compile step.

The browser's Accept-Language chooses; the language switch (a cookie) overrides it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

__all__ = ["DEFAULT", "LANGUAGES", "Gettext", "choose", "gettext_for", "translations"]

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "en"
# The languages offered, each named in itself (the switch shows these names).
LANGUAGES = {"en": "English", "de": "Deutsch"}

Gettext = Callable[..., str]


@cache
def translations(lang: str) -> dict[str, str]:
    """msgid -> msgstr of one language (English is the msgids themselves)."""
    path = LOCALE_DIR / lang / "LC_MESSAGES" / "panel.po"
    if lang == DEFAULT or not path.exists():
        return {}
    with path.open("rb") as f:
        catalog = read_po(f, locale=lang)
    return {
        str(m.id): str(m.string)
        for m in catalog
        if m.id and isinstance(m.string, str) and m.string and not m.fuzzy
    }


def gettext_for(lang: str) -> Gettext:
    """``_("Hello %(name)s", name=x)``: the translation, with its named values filled in."""
    table = translations(lang)

    def gettext(message: str, **values: Any) -> str:
        text = table.get(message, message)
        return text % values if values else text

    return gettext


def choose(cookie: str | None, accept_language: str) -> str:
    """The switch's choice if it names a language we have, else the browser's best match
    (RFC 9110 12.5.4: highest q first; ``de-AT`` matches ``de``), else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for neg_q, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if neg_q < 0 and primary in LANGUAGES:
            return primary
    return DEFAULT
