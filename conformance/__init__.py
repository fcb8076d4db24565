"""The conformance suite: every promise of the platform a requirement checked over the wire."""

from conformance.requirements import needs, not_applicable, requirement

__all__ = ["needs", "not_applicable", "requirement"]
