"""Tables for device secrets (one device, one secret) and enrollment groups."""
