"""README.txt: what a bundle is and how to check it with standard tools, in plain words.

The verification text is also the report's "How to verify" section, so the two never differ.
The Python check below is run by the tests against real bundles: it must stay correct.
"""

from __future__ import annotations

from guardmail.export.evidence import Evidence

CHAIN_CHECK = """\
python3 - <<'EOF'
import hashlib, json
prev = None
for line in open("journal.jsonl", encoding="utf-8"):
    e = json.loads(line)
    assert prev is None or e["prev_hash"] == prev, f"entry {e['seq']}: chain broken"
    prev = e["hash"]
    if "withheld" in e:
        continue
    assert json.loads(e["body"])["seq"] == e["seq"], f"entry {e['seq']}: moved"
    h = hashlib.sha256((e["prev_hash"] + "\\n" + e["body"]).encode("utf-8")).hexdigest()
    assert h == e["hash"], f"entry {e['seq']}: altered"
print("journal chain intact")
EOF"""


def verification(evidence: Evidence, *, signed_log: str = "") -> str:
    """How to check the bundle: files, then journal chain, then items against the journal, then
    (``signed_log``, from ``guardmail.export.proofs.log_readme``) the signed Merkle log."""
    first = evidence.journal[0] if evidence.journal else None
    last = evidence.journal[-1] if evidence.journal else None
    anchor = (
        f"\n   The first entry here (seq {first.seq}) follows the entry whose hash is\n"
        f"    {first.prev_hash}\n"
        f"   and the last entry (seq {last.seq}) has the hash\n"
        f"    {last.hash}\n"
        if first and last
        else "\n"
    )
    indented = "\n".join(f"    {line}" for line in CHAIN_CHECK.splitlines())
    return f"""\
1. The files. In the bundle's folder (unzip it first if it came as a .zip), run

    sha256sum -c SHA256SUMS

   Every line must end in OK (on macOS: shasum -a 256 -c SHA256SUMS). A changed file is
   reported FAILED, a missing one "No such file or directory". SHA256SUMS lists every file of
   the bundle except itself: a file that is not listed there was added later.

2. The journal. guardmail writes every event (item archived, action taken, warning sent,
   export made) to an append-only journal in which each entry carries the hash of the one
   before it. journal.jsonl holds the entries covering this bundle, one JSON object per line
   with "seq", "prev_hash", "hash" and "body". For every entry

    hash = SHA-256( prev_hash + "\\n" + body )

   written as 64 lower-case hex digits, where prev_hash is the 64 hex digits of the previous
   entry's hash, "\\n" is one line feed, and body is the "body" text exactly as given, encoded
   as UTF-8. Each entry's prev_hash must equal the hash of the line before it, and seq (also
   inside body) counts up by one. One entry can be checked with

    printf '%s\\n%s' "$prev_hash" "$body" | sha256sum

   and the whole file, in the bundle's folder, with

{indented}

   Changing, removing or reordering an entry breaks the chain at that point.
   Entries about anyone this bundle is not for are "withheld": such a line has no body, only
   its prev_hash and hash, and the next entry's prev_hash must equal that hash. Nothing about
   other people leaves the vault, and the chain still runs unbroken from end to end.{anchor}
3. The items against the journal. Each item file's name ends in its journal number
   (seq); the body of the journal entry with that seq (kind "archived") names the
   SHA-256 of the item's bytes, which must equal the file's SHA-256 in SHA256SUMS.
   manifest.json lists the same facts for every item and warning.

4. The owner's vault keeps the whole journal; after this bundle was made it recorded an
   entry of kind "export" naming the SHA-256 of this bundle's SHA256SUMS file, so the
   owner can show that this is the bundle that was handed over.

{signed_log}guardmail does all of this with:  guardmail evidence verify PATH
"""


def readme(evidence: Evidence, *, generated_at: str, version: str, signed_log: str = "") -> str:
    items = evidence.items
    period = (
        f"received between {items[0].received_at:%Y-%m-%d %H:%M} and "
        f"{items[-1].received_at:%Y-%m-%d %H:%M} UTC"
        if items
        else "no items"
    )
    who = ", ".join(evidence.offenders) or "(none)"
    warnings = (
        "warning-*.eml  the warning guardmail sent to the sender, exactly as it was sent.\n"
        if evidence.warnings
        else ""
    )
    if evidence.notes:
        warnings += (
            "notes/         files the protected person kept with their case notes (guardmail\n"
            "               case note --attach), exactly as kept; the notes are journal entries.\n"
        )
    return f"""\
guardmail evidence bundle
=========================

What this is
------------
Copies of unwanted messages that guardmail blocked and archived as evidence for
"{evidence.tenant}": {len(items)} items sent by {who}, {period}.
Made on {generated_at} by guardmail {version}.

guardmail keeps every blocked message exactly as it arrived, byte for byte, and writes each
event to a tamper-evident journal. This bundle holds copies of those messages, the journal
entries covering them, and a report, together with checksums that anyone can verify with
standard tools. Nothing in it has been converted or edited.

Files
-----
items/         each message exactly as received. .eml files are e-mail messages (any mail
               program opens them); .xml files are instant messages (XMPP stanzas).
               The names sort by time: number, time received (UTC), journal number (seq).
{warnings}report.pdf     a printable report: summary, timeline, every item, full headers.
report.html    the same report as a web page.
abuse/         for each offender and provider they wrote from, an abuse report to that
               provider (abuse@domain): a .txt with every message's headers, times and
               SHA-256, and for e-mail a .eml (RFC 5965) with the messages attached, to send.
manifest.json  each item's details: time received, channel, account, source reference,
               offender, matching rule and header, action taken, seq, SHA-256, file name.
journal.jsonl  the journal entries covering these items (see below).
log/           the vault's signed tree head, its public key, and a proof for every item
               that its journal entry is in the signed log (see below).
SHA256SUMS     the SHA-256 checksum of every other file.

How to check it
---------------
{verification(evidence, signed_log=signed_log)}"""
