"""The reference mail system: a compact, real asyncio implementation of the platform."""

__version__ = "0.1.0"
