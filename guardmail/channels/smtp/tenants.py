"""What the content filter needs of the tenants its recipients belong to.

The daemon owns the tenants (``daemon.tenants.TenantDirectory``, read from ``tenants.d`` by
``config.tenants``); the filter sees them only through these two protocols, so the channel never
imports the daemon.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from guardmail.pipeline import Pipeline


class RecipientTenant(Protocol):
    """What the filter needs of the tenant a recipient belongs to (``daemon.tenants.Routed``)."""

    @property
    def name(self) -> str: ...

    @property
    def quarantine_mailbox(self) -> str | None: ...

    @property
    def pipeline(self) -> Pipeline: ...


class Tenants(Protocol):
    """The tenants of ``tenants.d`` and the router to them (``daemon.tenants.TenantDirectory``)."""

    @property
    def names(self) -> Collection[str]: ...

    def route(self, recipient: str) -> RecipientTenant | None: ...

    def tenant(self, name: str) -> RecipientTenant | None: ...

    def reload(self) -> bool: ...

    async def watch(self) -> None: ...

    def close(self) -> None: ...
