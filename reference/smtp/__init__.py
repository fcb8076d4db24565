"""SMTP front ends: the MX and submission listeners (``server``), the session's command loop
(``session``), the mail transaction (``transaction``), AUTH (``auth``) and its limits
(``authlimit``), the pure command and PROXY parsers. Each is its own module, imported by
name."""

__all__: list[str] = []
