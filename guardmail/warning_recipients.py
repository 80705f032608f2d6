"""Where the one warning may go: concrete addresses and JIDs, from the config and the evidence.

Contract (both functions read the vault's journal and nothing else; neither sends anything):
- Only a concrete address the offender used (in archived evidence) or the config lists, never a
  pattern (a glob, a ``re:`` JID pattern, a domain), never a no-reply address. Config entries
  come first, then the evidence in the vault's order; duplicates are dropped, the first kept.
- ``names`` are the case-folded names of every offender entry that is the same person
  (``Warner.same_person``): evidence archived under any of them counts.
- Mail: the addr-spec of each ``From``, ``Reply-To`` or ``Sender`` value a rule matched on
  (the archived entry's ``matches``).
- XMPP: bare JIDs from the offender's ``jids`` or one they wrote from, never a group chat's
  occupant address and never the person's own outgoing messages.
"""

from __future__ import annotations

from email.utils import parseaddr

from guardmail.config.settings import OffenderConfig
from guardmail.core.warning import is_no_reply_address
from guardmail.vault import journal
from guardmail.vault.store import Vault

_GLOB = frozenset("*?[")


def mail_recipients(vault: Vault, offender: OffenderConfig, names: frozenset[str]) -> list[str]:
    """The addresses a mail warning to ``offender`` may go to, best first."""
    found = [a for a in offender.addresses if _GLOB.isdisjoint(a)]
    for row in vault.iter_rows(kind="archived"):
        body = journal.entry(row)
        if str(body.get("offender")).casefold() not in names or body.get("channel") != "mail":
            continue
        for match in body.get("matches", []):
            value = parseaddr(str(match.get("value", "")))[1]
            if match.get("header") in ("From", "Reply-To", "Sender") and "@" in value:
                found.append(value)
    return list(dict.fromkeys(a for a in found if not is_no_reply_address(a)))


def xmpp_recipients(vault: Vault, offender: OffenderConfig, names: frozenset[str]) -> list[str]:
    """The bare JIDs an XMPP warning to ``offender`` may go to, best first."""
    found = [j for j in offender.jids if _GLOB.isdisjoint(j) and not j.startswith("re:")]
    for row in vault.iter_rows(kind="archived"):
        body = journal.entry(row)
        if str(body.get("offender")).casefold() not in names or body.get("channel") != "xmpp":
            continue
        if body.get("direction") == "outgoing" or "muc" in body:
            continue  # the person's own message (from their JID), or a room's (kept.py)
        meta = body.get("meta", {})
        if meta.get("muc_pm") == "true":
            continue  # a room's occupant address: not the offender's own JID
        found.append(str(meta.get("from", "")))
    from guardmail.channels.xmpp import blocklist  # slixmpp: only where XMPP is used

    bare = (blocklist.canonical(j) for j in found)
    return list(dict.fromkeys(j for j in bare if j and "@" in j))
