"""The mailspec pytest plugin: requirements, targets and the conformance report."""
