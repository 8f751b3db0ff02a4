"""`make bench`: clinvk measured against the raw CLIs, on loopback, against the fake upstream."""
