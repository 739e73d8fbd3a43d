"""Tables the HTTP service shares between processes: nonces, rate-limit buckets."""
