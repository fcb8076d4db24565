"""The conformance tests: one requirement per test, checked over the wire against the target."""
