"""The server blocklist (XEP-0191) guardmail keeps in step with the offender list. Pure.

Contracts:
- Only offenders whose action is ``block`` and who are not held out (still owed the warning over
  XMPP, which the server would refuse to deliver to a blocked JID) are listed, and only what
  XEP-0191 can express exactly: their ``jids`` (as bare JIDs) and their ``domains`` (a domain
  JID blocks the whole domain). Patterns and display names stay guardmail's own business.
- guardmail removes only entries it added itself (``managed``): what the person blocked by hand
  stays blocked, even when it is also, or was once, an offender's.
- Entries guardmail manages that someone removed from the server are added again while the
  offender is still listed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from slixmpp.jid import JID, InvalidJID

from guardmail.core.rules import Action, RuleSet


def canonical(jid: str) -> str | None:
    """The bare JID as a server stores it (stringprep'd), or None if it is not a JID."""
    try:
        parsed = JID(jid.strip())
    except InvalidJID:
        return None
    return parsed.bare or None


def wanted(rules: RuleSet, *, held: Collection[str] = ()) -> set[str]:
    """The blocklist entries the offender list asks for; ``held``: offender names (casefolded)
    left out for now."""
    found: set[str] = set()
    for off in rules.offenders:
        if off.action is not Action.BLOCK or off.name.casefold() in held:
            continue
        for value in (*off.jids, *(d.strip().lstrip("@").rstrip(".") for d in off.domains)):
            jid = canonical(value)
            if jid is not None:
                found.add(jid)
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockPlan:
    add: frozenset[str]
    remove: frozenset[str]
    managed: frozenset[str]  # what guardmail manages once the plan is carried out


def plan(*, wanted: set[str], current: set[str], managed: set[str]) -> BlockPlan:
    """What to block and unblock so that the server holds ``wanted`` (see the contracts)."""
    add = wanted - current
    remove = (managed - wanted) & current
    return BlockPlan(
        add=frozenset(add),
        remove=frozenset(remove),
        managed=frozenset((managed & wanted) | add),
    )
