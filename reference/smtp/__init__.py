"""SMTP front ends: the MX and submission listeners."""
