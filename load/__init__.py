"""Locust scenarios and benchmarks for mailspec (loopback only)."""
