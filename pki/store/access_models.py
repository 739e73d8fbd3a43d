"""Tables for principals, access keys, policies and the audit log."""
