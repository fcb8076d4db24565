"""SMTP front ends: the MX and submission listeners, their command parsers, PROXY and AUTH
limits. Each is its own module, imported by name."""

__all__: list[str] = []
