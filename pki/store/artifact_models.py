"""Tables for CRL state and broker artifacts."""
