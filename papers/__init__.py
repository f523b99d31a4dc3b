"""One package or module per paper."""
