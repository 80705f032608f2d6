"""The daemon's Prometheus metrics, made only when ``metrics`` is configured.

prometheus_client (with http.server, wsgiref and the like it imports: ~8 MB of a daemon's
memory) is imported by this module alone, so that a daemon without a metrics port (most of an
ISP's milters) never loads it. ``guardmail.daemon.observe.Board`` feeds it the same events it
counts for ``guardmail status``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


class Metrics:
    """The metrics of one daemon; each method is called under the Board's lock."""

    def __init__(self, *, tenant: str, vault_size: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.judged = Counter(
            "guardmail_items_judged",
            "Items judged",
            ["tenant", "channel", "action"],
            registry=self.registry,
        )
        self.archived = Counter(
            "guardmail_items_archived",
            "Items archived in the vault",
            ["tenant"],
            registry=self.registry,
        )
        self.warnings = Counter(
            "guardmail_warnings", "Warning attempts by outcome", ["outcome"], registry=self.registry
        )
        self.errors = Counter(
            "guardmail_errors", "Events logged at error level", ["event"], registry=self.registry
        )
        self.reloads = Counter(
            "guardmail_reloads", "Configuration reloads", ["result"], registry=self.registry
        )
        self.stamps = Counter(
            "guardmail_timestamps",
            "Trusted timestamps of signed tree heads asked for, by outcome",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.up = Gauge(
            "guardmail_source_up",
            "1 when the source is connected",
            ["source"],
            registry=self.registry,
        )
        vault_bytes = Gauge(
            "guardmail_vault_bytes",
            "Bytes in the tenant's vault",
            ["tenant"],
            registry=self.registry,
        )
        vault_bytes.labels(tenant).set_function(vault_size)
        self._server: WSGIServer | None = None

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics (prometheus_client's own thread) until ``close()``."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
