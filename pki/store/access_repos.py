"""Repositories for principals, policies and the audit log.  They never commit."""
