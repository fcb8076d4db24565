"""Tests of reference.imap, one file per module or command family."""
