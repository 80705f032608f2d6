"""What was kept at receipt, read back: an item's check, its signatures' results and the key
records they used, and the signatures verified again offline from those snapshots.

Contracts:
- ``stored`` reads one entry's check in one read transaction (``check`` is None if the entry
  was never checked); ``Stored.records`` gives each key record exactly as fetched at receipt.
- ``recheck_stored`` never touches the network: dkimpy is handed the stored records only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from guardmail.storage.base import DkimKeyRow, DkimResultRow, ReceiptCheckRow, Storage
from guardmail.vault.dkimlimits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from guardmail.vault.dkimcheck import Signature


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """An item's check as stored, with the key snapshots its signatures used (by SHA-256)."""

    check: ReceiptCheckRow | None
    results: tuple[DkimResultRow, ...]
    keys: dict[str, DkimKeyRow]

    def records(self) -> dict[str, bytes]:
        """``SELECTOR._domainkey.DOMAIN`` -> the record as fetched (for ``dkimcheck.recheck``)."""
        return {f"{k.selector}._domainkey.{k.domain}": k.record for k in self.keys.values()}


def stored(storage: Storage, tenant: str, seq: int) -> Stored:
    """The check kept for entry ``seq`` (``check`` None if it was never checked)."""
    with storage.read() as tx:
        row = tx.receipt_check(tenant, seq)
        results = tuple(tx.dkim_results(tenant, seq))
        keys: dict[str, DkimKeyRow] = {}
        for r in results:
            if r.key_sha256 and r.key_sha256 not in keys:
                key = tx.dkim_key(tenant, r.key_sha256)
                if key is not None:
                    keys[r.key_sha256] = key
    return Stored(check=row, results=results, keys=keys)


def recheck_stored(raw: bytes, kept: Stored, *, limits: Limits = DEFAULT_LIMITS) -> list[Signature]:
    """The item's signatures verified again, offline, from the snapshots kept at receipt."""
    from guardmail.vault.dkimcheck import recheck

    return list(recheck(raw, kept.records(), limits=limits).signatures)
