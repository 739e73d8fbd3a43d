"""Repositories for nonces and rate limits.  They never commit."""
