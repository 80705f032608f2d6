"""The evidence vault: raw blobs by SHA-256 and a hash-chained journal of every event."""
