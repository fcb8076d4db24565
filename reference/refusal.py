"""A refusal whose message is a template with named values, so that each front end can say
it in its reader's language: the panel translates the template, the command line and the
API show the English text that ``str()`` gives."""

from __future__ import annotations

__all__ = ["Refusal"]


class Refusal(ValueError):
    """``Refusal("no such account: %(address)s", address=a)``: says why, in English."""

    def __init__(self, template: str, **values: object) -> None:
        super().__init__(template % values if values else template)
        self.template = template
        self.values = values
