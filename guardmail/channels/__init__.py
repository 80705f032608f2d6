"""One adapter per channel: protocol I/O only (items in, actions out)."""
