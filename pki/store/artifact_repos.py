"""Repositories for CRLs and artifacts.  They never commit."""
