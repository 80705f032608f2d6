"""Which person an offender entry is: the stable id the warning ledger is keyed on.

The label (``name``) is for people and may change; the at-most-once warning must not. So every
offender has an id, and the ledger, ``on_first_block`` and ``warn`` go by it.

The rule (``assign``), for one tenant, applied in one write transaction each time the warner
first needs ids after a start or a reload:

1. An entry with ``id:`` in the config has that id. Entries sharing an id are one person: this
   is how a report adds an alias to an offender (its ``NAME (reported)`` entry carries the id).
2. A legacy ``NAME (reported)`` entry without ``id:``, written by an older guardmail, has the id
   of offender ``NAME`` when there is one.
3. Any other entry gets the id of a row in the tenant's id table (state, never the config):
   first the row with the same name (ignoring case) and the same identities, else the row with
   the same identities (the entry was renamed), else the row with the same name (its addresses,
   patterns ... were edited). A row serves one entry at a time. With none, a new id is made.
   The row then takes the entry's current name and identities, so a rename and an edit of the
   addresses made one after the other (a start or reload between) keep the id; both at once
   make a new person. Give the entry an ``id:`` to make it independent of both: copy the one
   ``guardmail warn --status`` shows, since its ledger row and its ``NAME (reported)`` entry
   are under that id (a different id is a new person with no warning sent).

"Identities" are everything that matches: addresses, patterns, domains, display names and JIDs,
each case-folded and tagged with its kind, as a sorted tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

REPORTED_SUFFIX = " (reported)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One offender entry of the config, as far as its identity goes."""

    name: str
    explicit_id: str | None
    identities: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """A row of the id table: the id, the entry's last-seen name (case-folded) and identities,
    and the name and time it was first seen under."""

    id: str
    name: str
    identities: tuple[str, ...]
    first_name: str
    first_seen: str


def identities(**kinds: Sequence[str]) -> tuple[str, ...]:
    """The identity tuple of an entry: ``identities(addresses=[...], jids=[...], ...)``."""
    return tuple(
        sorted({f"{kind}:{v.strip().casefold()}" for kind, values in kinds.items() for v in values})
    )


def _same_both(e: Entry, k: Known) -> bool:
    return k.name == e.name.casefold() and k.identities == e.identities


def _same_identities(e: Entry, k: Known) -> bool:
    return k.identities == e.identities


def _same_name(e: Entry, k: Known) -> bool:
    return k.name == e.name.casefold()


_PASSES = (_same_both, _same_identities, _same_name)


def assign(
    entries: Sequence[Entry], known: Sequence[Known], *, new_id: Callable[[], str], now: str
) -> tuple[dict[str, str], list[Known]]:
    """Each entry's id (by case-folded name), and the rows of the table to write (new or
    changed). See the module docstring for the rule."""
    ids: dict[str, str] = {}
    by_name = {e.name.casefold(): e for e in entries}
    rest: list[Entry] = []
    for e in entries:
        if e.explicit_id is not None:
            ids[e.name.casefold()] = e.explicit_id
        else:
            rest.append(e)
    legacy: list[Entry] = []
    plain: list[Entry] = []
    for e in rest:
        base = e.name[: -len(REPORTED_SUFFIX)].casefold()
        is_legacy = e.name.casefold().endswith(REPORTED_SUFFIX) and base in by_name
        (legacy if is_legacy else plain).append(e)
    free = list(known)
    matched: dict[str, Known] = {}
    for test in _PASSES:
        for e in plain:
            if e.name.casefold() in matched:
                continue
            row = next((k for k in free if test(e, k)), None)
            if row is not None:
                matched[e.name.casefold()] = row
                free.remove(row)
    writes: list[Known] = []
    for e in plain:
        key = e.name.casefold()
        row = matched.get(key)
        if row is None:
            row = Known(
                id=new_id(), name=key, identities=e.identities, first_name=e.name, first_seen=now
            )
            writes.append(row)
        elif (row.name, row.identities) != (key, e.identities):
            writes.append(replace(row, name=key, identities=e.identities))
        ids[key] = row.id
    for e in legacy:
        base = e.name[: -len(REPORTED_SUFFIX)].casefold()
        ids[e.name.casefold()] = ids.get(base) or _fresh(e, writes, new_id, now)
    return ids, writes


def _fresh(e: Entry, writes: list[Known], new_id: Callable[[], str], now: str) -> str:
    row = Known(
        id=new_id(),
        name=e.name.casefold(),
        identities=e.identities,
        first_name=e.name,
        first_seen=now,
    )
    writes.append(row)
    return row.id
