"""Offender ids kept in state, and the one-time move of the warning ledger onto them.

Contracts:
- ``resolve`` gives every offender entry of a tenant its id by the rule in
  ``guardmail.core.offender_ids``, reading and writing the tenant's id table in one write
  transaction: two processes starting at once agree on the ids (the second sees the first's).
- In that same transaction, the first time it runs for a tenant, ledger rows written before
  ids (keyed by the offender name, case-folded) move to the id of the entry with that name.
  When two such rows land on one id (an offender and its ``NAME (reported)`` entry were both
  warned before), the row that says most is kept under the id (sent, marked sent, then an
  unknown outcome, then failed) and the other stays under its name. Rows naming no current
  offender stay as they are. A marker (the cursor ``ledger_keys``) records that it was done.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from guardmail.config.settings import OffenderConfig
from guardmail.core.offender_ids import Entry, Known, assign, identities
from guardmail.storage.base import OffenderIdRow, Storage, Transaction, WarningRow

_MARKER_SOURCE = "warner"
_MARKER = "ledger_keys"
_KEYED_BY_ID = "offender-id"
_RANK = {"sent": 3, "marked_sent": 3, "sending": 2, "failed": 1}


def new_id() -> str:
    """A fresh offender id: ``o-`` and 12 random hex digits."""
    return f"o-{secrets.token_hex(6)}"


def entry(offender: OffenderConfig) -> Entry:
    return Entry(
        name=offender.name,
        explicit_id=offender.id,
        identities=identities(
            addresses=offender.addresses,
            patterns=offender.patterns,
            domains=offender.domains,
            display_names=offender.display_names,
            jids=offender.jids,
        ),
    )


def resolve(
    storage: Storage, tenant: str, offenders: Sequence[OffenderConfig], *, now: datetime
) -> dict[str, str]:
    """Each offender's id, by case-folded name; see the module contract."""
    with storage.transaction() as tx:
        known = [
            Known(
                id=r.id,
                name=r.name,
                identities=tuple(r.identities.split("\n")) if r.identities else (),
                first_name=r.first_name,
                first_seen=r.first_seen,
            )
            for r in tx.offender_ids(tenant)
        ]
        ids, writes = assign(
            [entry(o) for o in offenders], known, new_id=new_id, now=now.isoformat()
        )
        for k in writes:
            tx.put_offender_id(
                OffenderIdRow(
                    tenant=tenant,
                    id=k.id,
                    name=k.name,
                    identities="\n".join(k.identities),
                    first_name=k.first_name,
                    first_seen=k.first_seen,
                )
            )
        if tx.cursor(tenant, _MARKER_SOURCE, _MARKER) != _KEYED_BY_ID:
            _rekey_ledger(tx, tenant, ids)
            tx.set_cursor(tenant, _MARKER_SOURCE, _MARKER, _KEYED_BY_ID)
    return ids


def _rekey_ledger(tx: Transaction, tenant: str, ids: dict[str, str]) -> None:
    moved: dict[str, WarningRow] = {}
    for row in tx.warnings(tenant):
        target = ids.get(row.offender)
        if target is None or target == row.offender:
            continue
        best = moved.get(target)
        if best is not None and _RANK.get(best.state, 0) >= _RANK.get(row.state, 0):
            continue  # the stronger row keeps the id; this one stays under its name
        moved[target] = row
    for target, row in moved.items():
        tx.delete_warning(tenant, row.offender)
        tx.put_warning(replace(row, offender=target))
