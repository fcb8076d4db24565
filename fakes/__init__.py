"""fakes package."""
