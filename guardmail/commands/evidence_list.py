"""What `evidence list` and `evidence show` read: every kind of evidence with bytes in the vault.

Three kinds of journal entry carry a blob: ``archived`` (an item received: mail, stanza, a
report), ``warning`` (the warning guardmail sent, the exact bytes the server took) and
``abuse_report`` (a report sent to a provider); ``note`` entries (the case journal, ``guardmail
case note``) are listed too, their files shown by ``guardmail case show``. ``list`` shows them
in journal order, each line starting with the seq that ``show`` takes. Asked for, kind
``custody`` lists the chain of custody (guardmail.vault.custody) in the same order.
"""

from __future__ import annotations

import json
from typing import Any

from guardmail.storage.base import JournalRow
from guardmail.vault import custody, journal
from guardmail.vault.store import Vault

KINDS = ("archived", "warning", "abuse_report", "note")


def _record(row: JournalRow, body: dict[str, Any], done: str | None) -> dict[str, Any]:
    if row.kind == "note":
        files = body.get("files") or []
        return {
            "seq": row.seq,
            "kind": row.kind,
            "time": body.get("time"),
            "sha256": None,
            "channel": "case",
            "offender": body.get("offender"),
            "subject": " ".join(str(body.get("text", "")).split())[:80],
            "done": f"note with {len(files)} file(s)",
        }
    if row.kind == "archived":
        impersonation = body.get("impersonation")
        return (
            {
                "seq": row.seq,
                "kind": row.kind,
                "time": body.get("time"),
                "sha256": row.sha256,
                "channel": body.get("channel"),
                "account": body.get("account"),
                "offender": body.get("offender"),
                "action": body.get("action"),
                "subject": body.get("subject"),
                "done": done,
            }
            | (
                # Mail forged in the person's name: no offender, the kind of forgery instead.
                {"impersonation": impersonation.get("kind")}
                if isinstance(impersonation, dict)
                else {}
            )
            | _side(body)
        )
    return {
        "seq": row.seq,
        "kind": row.kind,
        "time": body.get("time"),
        "sha256": row.sha256,
        "channel": body.get("channel", "email"),
        "offender": body.get("offender"),
        "to": body.get("to"),
        "subject": body.get("subject"),
        "done": f"sent to {body.get('to')}: {body.get('server_reply')}",
    }


def _custody(row: JournalRow, body: dict[str, Any], as_json: bool) -> None:
    text = custody.describe(row, body)
    if as_json:
        record = {
            "seq": row.seq,
            "kind": "custody",
            "entry_kind": row.kind,
            "time": body.get("time"),
            "by": body.get("by"),
            "what": text,
        }
        print(json.dumps(record, ensure_ascii=False))
        return
    print(f"{row.seq:>6}  {body.get('time')}  custody  {text}")


def list_evidence(vault: Vault, *, kinds: tuple[str, ...], as_json: bool) -> None:
    """Print the entries of ``kinds`` (one line, or one JSON object, each); kind ``custody``
    is the record of who viewed, exported, verified or decided what (guardmail.vault.custody)."""
    actions: dict[Any, Any] = {}
    for row in vault.iter_rows(kind="action"):
        body = journal.entry(row)
        actions[body.get("archived_seq")] = body.get("done")
    for row in vault.iter_rows():
        if "custody" in kinds and row.kind in custody.KINDS:
            _custody(row, journal.entry(row), as_json)
            continue
        if row.kind not in kinds or (row.sha256 is None and row.kind != "note"):
            continue
        rec = _record(row, journal.entry(row), actions.get(row.seq))
        if as_json:
            print(json.dumps(rec, ensure_ascii=False))
            continue
        what = rec["action"] if row.kind == "archived" else row.kind
        # str(): a hand-edited entry may hold null or a number where a name belongs (verify
        # names such an entry; listing it still works).
        print(
            f"{rec['seq']:>6}  {rec['time']}  {str(rec['channel']):<4}  "
            f"{str(what):<10}  {_who(rec)}  {(row.sha256 or '')[:16]}  "
            f"{rec['subject']!r}  ({rec['done'] or 'no action recorded'})"
        )


def _side(body: dict[str, Any]) -> dict[str, Any]:
    """The person's own messages (``direction: outgoing``) and group-chat entries (kept.py)."""
    out: dict[str, Any] = {}
    if body.get("direction"):
        out["direction"] = body["direction"]
    muc = body.get("muc")
    if isinstance(muc, dict):
        out["room"] = muc.get("room")
        if muc.get("context_of") is not None:
            out["context_of"] = muc.get("context_of")
    return out


def _who(rec: dict[str, Any]) -> str:
    """The offender column: the offender, or for mail forged in the person's own name what
    kind of impersonation it is; the person's own message to an offender says so."""
    if rec["offender"] is None and rec.get("impersonation"):
        return f"impersonation ({rec['impersonation']})"
    if rec.get("direction") == "outgoing":
        return f"(the person, to {rec['offender']})"
    if rec.get("context_of") is not None:
        return f"(room context of #{rec['context_of']})"
    return str(rec["offender"])


def evidence_row(vault: Vault, seq: int) -> JournalRow | None:
    """The entry ``show`` prints the bytes of: one of ``KINDS`` with a blob, else None."""
    found = vault.row(seq)
    if found is None or found.kind not in KINDS or found.sha256 is None:
        return None
    return found
