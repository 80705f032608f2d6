"""Evidence leaving the vault: export bundles, their verification, and abuse reports.

A bundle is a folder (or a zip holding one folder) that a third party checks without guardmail:

    items/NNNN-YYYYMMDDTHHMMSSZ-seqS.eml|.xml   each archived item, byte for byte as archived
    warning-<offender>.eml                      the cease-contact warning sent, if any
    journal.jsonl                               the hash-chained journal rows covering them
    manifest.json                               each file's metadata and SHA-256
    report.pdf, report.html                     the printable report
    abuse/<offender>-<domain>.txt|.eml          abuse reports to the senders' providers, to send
    log/                                        signed tree head, public key, inclusion proofs
    README.txt                                  what this is and how to check it
    SHA256SUMS                                  every other file, for ``sha256sum -c``

Invariants:
- Item and warning files are the vault's blobs, unaltered; each is re-hashed on the way out and
  the export fails rather than ship bytes whose SHA-256 is not the one journaled.
- journal.jsonl is a contiguous run of rows (every row between the first and last exported
  entry, whoever it concerns), so the chain can be recomputed from its first ``prev_hash``.
- A bundle appears at its path complete or not at all (written beside it, then renamed).

Errors raised on purpose here (both GuardmailErrors; they belong in the tree of guardmail.errors):

    ExportError         evidence cannot be exported or a bundle cannot be read
     └── BundleUnreadable   the path given as a bundle is not a readable folder or zip
"""

from __future__ import annotations

from guardmail.errors import GuardmailError

# The bundle's fixed file names (verify.py reads them without loading the report libraries).
FORMAT = "guardmail-evidence-bundle/2"  # /2: with log/; /1 bundles verify without it
SUMS, MANIFEST, JOURNAL, README = "SHA256SUMS", "manifest.json", "journal.jsonl", "README.txt"


class ExportError(GuardmailError):
    """Evidence cannot be exported faithfully (a blob altered or missing, the chain broken)."""


class BundleUnreadable(ExportError):
    """The path given as a bundle does not exist, or is neither a readable folder nor a zip."""


__all__ = ["BundleUnreadable", "ExportError"]
