"""Content scanners the policy calls: a clamd client (virus), and later spam engines."""
