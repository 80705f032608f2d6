"""Items held for review (suspected aliases): list, show, confirm, dismiss.

The pipeline archives a suspected alias's item (``action: review``, its signals under
``suspected``) and its source moves it to the review folder. A person then decides:

- ``confirm``: the sender's address becomes an alias of the offender (``--as`` another one), in
  ``offenders.d/reported.yaml`` as a report adds one (control/offenders.py: under the offender's
  stable id, so one warning for both), which the daemon hot-reloads: later mail from it is
  quarantined or blocked by the rules. The item becomes that offender's evidence: its features
  are learned for the offender, and in a Maildir it moves from the review folder to the
  quarantine folder (an offender whose action is ``block``: it is deleted, as a block is); in
  IMAP likewise, over a connection of its own (channels/imap/review.py).
- ``dismiss``: the sender is remembered as not an alias of that offender (storage, read by the
  daemon whenever it would hold this sender again), and the message goes back where it was,
  byte-identical: the same file renamed back, or, if it is gone from the review folder, the
  vault's copy written back (its SHA-256 checked against the archived one). In IMAP the held
  message is found by its bytes and moved back to its folder (or the vault's copy APPENDed).

Contracts:
- Each decision is one journal entry, ``review.confirmed`` or ``review.dismissed``, naming the
  archived entry (``archived_seq``), the offender, the sender, what was done and who decided
  (``by``, guardmail.vault.custody); an item is
  decided once (``BadReview`` on a second decision, or on an entry that is not held).
- Nothing is ever sent to a suspected alias.
- The order leaves no window for the daemon to hold the item again: a dismissal is stored before
  the file moves back; a confirmation's rule is written before the file moves on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from guardmail.channels.imap.review import move_held
from guardmail.channels.maildir import find_in, move_into, restore, unique_name
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.config.settings import LoadedConfig, Settings
from guardmail.control.offenders import ReportedFile, plan, reported_path
from guardmail.core.item import Identity, mail_item
from guardmail.core.rules import decide
from guardmail.daemon.tenant import Tenant, build_rules
from guardmail.errors import GuardmailError
from guardmail.vault import journal
from guardmail.vault.blobs import write_durably

CONFIRMED = "review.confirmed"
DISMISSED = "review.dismissed"


class BadReview(GuardmailError):
    """The review decision cannot be made as asked (no such held item, decided already)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """One item held for review, from the journal: its archived entry and what became of it."""

    seq: int
    sha256: str
    time: str
    subject: str
    sender: str
    offender: str
    likelihood: float
    signals: tuple[dict[str, Any], ...]
    state: str  # held, confirmed, dismissed
    where: str  # the last thing done with it
    meta: dict[str, Any] = field(default_factory=dict)
    source_ref: str = ""
    account: str = ""
    message_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.seq,
            "sha256": self.sha256,
            "time": self.time,
            "subject": self.subject,
            "sender": self.sender,
            "offender": self.offender,
            "likelihood": self.likelihood,
            "signals": list(self.signals),
            "state": self.state,
            "where": self.where,
        }


def held_items(tenant: Tenant) -> list[Held]:
    """Every item ever held for review in the tenant's journal, oldest first."""
    found: dict[int, dict[str, Any]] = {}
    state: dict[int, str] = {}
    where: dict[int, str] = {}
    for row in tenant.vault.iter_rows():
        if row.kind not in ("archived", "action", CONFIRMED, DISMISSED):
            continue
        body = journal.entry(row)
        if row.kind == "archived":
            if body.get("action") == "review" and isinstance(body.get("suspected"), dict):
                found[row.seq] = body
            continue
        seq = body.get("archived_seq")
        if not isinstance(seq, int) or seq not in found:
            continue
        where[seq] = str(body.get("done", ""))
        if row.kind != "action":
            state[seq] = "confirmed" if row.kind == CONFIRMED else "dismissed"
    out = []
    for seq, body in found.items():
        s = body["suspected"]
        meta = body.get("meta")
        signals = s.get("signals")
        out.append(
            Held(
                seq=seq,
                sha256=str(body.get("sha256", "")),
                time=str(body.get("time", "")),
                subject=str(body.get("subject", "")),
                sender=str(s.get("sender", "")),
                offender=str(s.get("offender", "")),
                likelihood=float(s.get("likelihood", 0.0)),
                signals=tuple(x for x in signals if isinstance(x, dict))
                if isinstance(signals, list)
                else (),
                state=state.get(seq, "held"),
                where=where.get(seq, ""),
                meta=meta if isinstance(meta, dict) else {},
                source_ref=str(body.get("source_ref", "")),
                account=str(body.get("account", "")),
                message_id=str(body.get("message_id", "")),
            )
        )
    return out


def find_held(tenant: Tenant, seq: int) -> Held:
    for held in held_items(tenant):
        if held.seq == seq:
            return held
    raise BadReview(f"vault entry {seq} is not an item held for review (see guardmail review list)")


def _undecided(tenant: Tenant, seq: int) -> Held:
    held = find_held(tenant, seq)
    if held.state != "held":
        raise BadReview(f"item {seq} was {held.state} already ({held.where})")
    if not held.sender:
        raise BadReview(f"item {seq} has no From address to decide on")
    return held


def _maildir_of(held: Held) -> tuple[Path, str] | None:
    """The Maildir the item came from and its unique file name, if it came from one."""
    root = held.meta.get("maildir")
    if not isinstance(root, str) or "/" not in held.source_ref:
        return None
    return Path(root), unique_name(held.source_ref.partition("/")[2])


def _imap_of(settings: Settings, held: Held) -> tuple[ImapSourceConfig, str] | None:
    """The IMAP account the item came from and the folder it was in, if it came from one."""
    folder = held.meta.get("folder")
    if not isinstance(folder, str) or "uid" not in held.meta:
        return None
    for cfg in settings.sources.imap:
        if cfg.name == held.account:
            return cfg, folder
    raise BadReview(f"item {held.seq} came from IMAP account {held.account!r}, not configured")


def _quarantine_folder(settings: Settings, root: Path) -> str:
    for m in settings.sources.maildir:
        if m.path == root:
            return m.quarantine_folder
    return "Quarantine"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    seq: int
    offender: str
    sender: str
    done: str
    rule_added: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.seq,
            "offender": self.offender,
            "sender": self.sender,
            "done": self.done,
            "rule_added": self.rule_added,
        }


def confirm(
    config: LoadedConfig,
    tenant: Tenant,
    seq: int,
    *,
    as_offender: str | None,
    now: datetime,
    by: Mapping[str, Any] | None = None,
) -> Decided:
    """The held item's sender becomes an alias of the offender; see the module docstring."""
    held = _undecided(tenant, seq)
    name = as_offender or held.offender
    settings = config.settings
    path = reported_path(config.path)
    store = ReportedFile(path)
    rule_added = None
    with store.locked():
        reported = store.read()
        names = {o.name.casefold() for o in reported}
        hand_written = [o for o in settings.offenders if o.name.casefold() not in names]
        every = {o.name.casefold(): o for o in [*hand_written, *reported]}
        offender = every.get(name.casefold())
        if offender is None:
            raise BadReview(f"no offender is named {name!r}")
        rules = build_rules(settings.model_copy(update={"offenders": [*hand_written, *reported]}))
        covered = decide((Identity(source="From", address=held.sender),), rules, now=now).offender
        if covered is None:
            new_plan = plan(
                hand_written=hand_written,
                reported=reported,
                key="addresses",
                value=held.sender,
                offender=offender.name,
                new_offender=None,
                action=offender.action,
                ids=tenant.warner.ids(),
            )
            store.write(new_plan.entries)
            rule_added = new_plan.addition.describe()
    raw = tenant.vault.blobs.get(held.sha256)
    item = mail_item(
        raw, tenant=tenant.name, account="review", source_ref=held.source_ref, received_at=now
    )
    tenant.linker.learn([(item, offender.name, held.sha256, True)], now=now)
    done = "left where it is (not from a Maildir or IMAP folder)"
    place = _maildir_of(held)
    imap = _imap_of(settings, held)
    if imap is not None:
        cfg, _ = imap
        done = move_held(
            cfg,
            review=settings.aliases.review_folder,
            target=None if offender.action == "block" else cfg.quarantine_folder,
            sha256=held.sha256,
            message_id=held.message_id,
        )
    elif place is not None:
        root, key = place
        review = root / f".{settings.aliases.review_folder}"
        found = find_in(review, key)
        if found is None:
            done = f"not in {review.name} any more"
        elif offender.action == "block":
            found.unlink()
            done = f"deleted {review.name}/{found.parent.name}/{found.name}"
        else:
            done = move_into(root, found, root / f".{_quarantine_folder(settings, root)}")
    tenant.vault.record(
        CONFIRMED,
        {
            "archived_seq": seq,
            "offender": offender.name,
            "suspected": held.offender,
            "sender": held.sender,
            "rule_added": rule_added,
            "done": done,
        }
        | _by(by),
        now=now,
        sha256=held.sha256,
        source_ref=held.source_ref,
    )
    return Decided(
        seq=seq, offender=offender.name, sender=held.sender, done=done, rule_added=rule_added
    )


def dismiss(
    settings: Settings,
    tenant: Tenant,
    seq: int,
    *,
    now: datetime,
    by: Mapping[str, Any] | None = None,
) -> Decided:
    """The sender is not an alias of the offender; the item goes back; see the docstring."""
    held = _undecided(tenant, seq)
    with tenant.storage.transaction() as tx:
        tx.put_not_alias(tenant.name, held.offender, held.sender, now.isoformat())
    done = "nothing to move back (not from a Maildir or IMAP folder)"
    place = _maildir_of(held)
    imap = _imap_of(settings, held)
    if imap is not None:
        cfg, folder = imap
        done = move_held(
            cfg,
            review=settings.aliases.review_folder,
            target=folder,
            sha256=held.sha256,
            message_id=held.message_id,
            raw=tenant.vault.blobs.get(held.sha256),
        )
    elif place is not None:
        root, key = place
        review = root / f".{settings.aliases.review_folder}"
        back = restore(root, review, key)
        if back is None:
            back = _rewrite_from_vault(tenant, held, root)
        if hashlib.sha256(back.read_bytes()).hexdigest() != held.sha256:
            raise BadReview(f"{back} does not hold the archived bytes of item {seq}")
        done = f"moved back to {back.parent.name}/{back.name} (sha256 {held.sha256})"
    tenant.vault.record(
        DISMISSED,
        {"archived_seq": seq, "offender": held.offender, "sender": held.sender, "done": done}
        | _by(by),
        now=now,
        sha256=held.sha256,
        source_ref=held.source_ref,
    )
    return Decided(seq=seq, offender=held.offender, sender=held.sender, done=done)


def _by(by: Mapping[str, Any] | None) -> dict[str, Any]:
    """Who decided (guardmail.vault.custody), when the caller says."""
    return {} if by is None else {"by": dict(by)}


def _rewrite_from_vault(tenant: Tenant, held: Held, root: Path) -> Path:
    """The item put back into ``root`` from the vault's copy (it left the review folder)."""
    sub, _, name = held.source_ref.partition("/")
    target = root / (sub if sub in ("new", "cur") else "new") / name
    if target.exists():
        return target
    write_durably(target, tenant.vault.blobs.get(held.sha256))
    st = root.stat()
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.chown(target, st.st_uid, st.st_gid)
    return target
