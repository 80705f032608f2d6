"""What the daemon is doing, for people and for Prometheus: built from the events it logs.

``Board`` listens to every event (guardmail.logs.add_listener) and keeps per-source connection
state, last item times and counts, written to ``STATE_DIR/status.json`` for ``guardmail status``,
and the same facts as Prometheus metrics on a loopback port. Events carry no secrets and no
message content, so neither do these.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardmail.vault.blobs import write_durably

if TYPE_CHECKING:
    from guardmail.daemon.metrics import Metrics

STATUS_FILE = "status.json"
# Events that say a source is up, or down (with the reason in "error").
_UP = {"maildir.watching", "imap.connected"}
_DOWN = {
    "imap.disconnected",
    "imap.login_failed",
    "imap.tls_failed",
    "imap.connect_failed",
    "imap.secret_unreadable",
    "imap.oauth_refused",
    "imap.oauth_failed",
    "imap.folder_role_missing",
    "maildir.unreadable",
    "source.failed",
}
VAULT_SIZE_CACHE_SECONDS = 60.0


def _source(fields: dict[str, Any]) -> str | None:
    account = fields.get("account")
    if account is None:
        return None
    folder = fields.get("folder")
    return f"{account}/{folder}" if folder else str(account)


def directory_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


class Board:
    """Thread-safe: events come from the loop and from IMAP threads."""

    def __init__(self, *, vault_root: Path, tenant: str, metrics: bool = True) -> None:
        """``metrics``: keep Prometheus metrics too (``serve`` them); without, prometheus_client
        is never imported (``guardmail.daemon.metrics``)."""
        self._lock = threading.Lock()
        self.started_at = datetime.now(UTC).isoformat()
        self.sources: dict[str, dict[str, str]] = {}
        self.counts: dict[str, int] = {}
        self.last_reload: dict[str, str] = {}
        self.timestamps: dict[str, Any] = {}
        self._vault_root = vault_root
        self._vault_size: tuple[float, int] = (0.0, 0)
        self.metrics: Metrics | None = None
        if metrics:
            from guardmail.daemon.metrics import Metrics

            self.metrics = Metrics(tenant=tenant, vault_size=self._cached_vault_size)

    def _cached_vault_size(self) -> float:
        checked, size = self._vault_size
        if time.monotonic() - checked > VAULT_SIZE_CACHE_SECONDS:
            size = directory_size(self._vault_root)
            self._vault_size = (time.monotonic(), size)
        return float(size)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def __call__(self, name: str, level: int, fields: dict[str, Any]) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        m = self.metrics
        with self._lock:
            source = _source(fields)
            if name in _UP and source:
                self.sources[source] = {"state": "up", "since": now, "detail": ""}
                if m is not None:
                    m.up.labels(source).set(1)
            elif name in _DOWN and source:
                detail = str(fields.get("error", name))
                self.sources[source] = {"state": "down", "since": now, "detail": detail}
                if m is not None:
                    m.up.labels(source).set(0)
            elif name == "item.judged":
                self._count("judged")
                if m is not None:
                    tenant, channel = fields.get("tenant", ""), fields.get("channel", "")
                    m.judged.labels(tenant, channel, fields.get("action", "")).inc()
            elif name == "item.archived":
                self._count("archived")
                if m is not None:
                    m.archived.labels(fields.get("tenant", "")).inc()
                if source and source in self.sources:
                    self.sources[source]["last_item"] = now
            elif name.startswith("warning.") and name != "warning.sending":
                self._count(name)
                if m is not None:
                    m.warnings.labels(name.removeprefix("warning.")).inc()
            elif name in ("config.reloaded", "config.reload_rejected"):
                result = "applied" if name == "config.reloaded" else "rejected"
                self._count(f"reload_{result}")
                if m is not None:
                    m.reloads.labels(result).inc()
                self.last_reload = {"result": result, "at": now}
            elif name in ("timestamp.stamped", "timestamp.failed"):
                self._timestamp(name, now, fields)
            if level >= logging.ERROR:
                self._count("errors")
                if m is not None:
                    m.errors.labels(name).inc()

    def _timestamp(self, name: str, now: str, fields: dict[str, Any]) -> None:
        ok = name == "timestamp.stamped"
        if self.metrics is not None:
            outcome = "stamped" if ok else "failed"
            self.metrics.stamps.labels(fields.get("tenant", ""), outcome).inc()
        if ok:
            self.timestamps = {
                "state": "ok",
                "since": now,
                "tree_size": fields.get("tree_size"),
                "gen_time": fields.get("gen_time"),
            }
        else:
            self.timestamps = {
                **{k: v for k, v in self.timestamps.items() if k in ("tree_size", "gen_time")},
                "state": "failing",
                "since": self.timestamps.get("since", now)
                if self.timestamps.get("state") == "failing"
                else now,
                "error": str(fields.get("error", "")),
                "failures": fields.get("failures"),
                "retry_in": fields.get("retry_in"),
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "started_at": self.started_at,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "sources": {k: dict(v) for k, v in sorted(self.sources.items())},
                "counts": dict(sorted(self.counts.items())),
                "last_reload": dict(self.last_reload),
                "timestamps": dict(self.timestamps),
            }

    def write(self, state_dir: Path) -> None:
        data = json.dumps(self.snapshot(), indent=2, sort_keys=True).encode()
        write_durably(state_dir / STATUS_FILE, data)

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics (prometheus_client's own thread) until ``close()``; only for a Board
        made with ``metrics``."""
        if self.metrics is None:
            raise RuntimeError("this Board keeps no metrics to serve")  # a bug in the caller
        self.metrics.serve(host, port)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
