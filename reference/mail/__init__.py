"""Mail values, the ground floor: replies, the message, xtext. Each is its own module,
imported by name; nothing here imports the rest of the reference."""

__all__: list[str] = []
