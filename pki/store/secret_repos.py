"""Repositories for device secrets.  They never commit."""
