"""TLS client contexts: the system's trust store plus an optional private CA, always verified."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Hostname-checked, certificate-verified, TLS 1.2 or newer; ``ca_file`` adds a CA."""
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
