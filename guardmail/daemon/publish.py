"""Publishing a timestamped tree head elsewhere (``evidence.timestamp.publish_command``).

A head that has left the machine holds the journal to what it was (``evidence verify
--against``): the person's lawyer or advocate receiving each one is a witness that no one with
the vault's key can silence. The command gets one JSON object on stdin:

    {"format": "guardmail-published-head/1", "tree_head": <the signed head's JSON text>,
     "signature": hex, "key_fingerprint": hex, "public_key": PEM,
     "timestamp": {"gen_time", "tsa", "token": base64 DER}}

and runs without a shell, with a timeout; its output is not read beyond a bounded error text.
A failure logs ``timestamp.publish_failed`` (error level); it is not retried (the next head,
which covers everything this one did, is published in turn).
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from collections.abc import Sequence

from guardmail.logs import event
from guardmail.storage.base import TimestampRow, TreeHeadRow
from guardmail.vault.signing import fingerprint, load_key, public_pem, signed_bytes
from guardmail.vault.store import Vault

PUBLISH_TIMEOUT = 60.0
FORMAT = "guardmail-published-head/1"


def message(vault: Vault, head: TreeHeadRow, stamp: TimestampRow) -> bytes:
    key = load_key(vault.root)
    public = key.public_key() if key is not None else None
    doc = {
        "format": FORMAT,
        "tree_head": signed_bytes(head).decode("utf-8"),
        "signature": head.signature,
        "key_fingerprint": fingerprint(public) if public is not None else None,
        "public_key": public_pem(public) if public is not None else None,
        "timestamp": {
            "gen_time": stamp.gen_time,
            "tsa": stamp.tsa_url,
            "token": base64.b64encode(stamp.token).decode("ascii"),
        },
    }
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def publish(
    command: Sequence[str],
    vault: Vault,
    head: TreeHeadRow,
    stamp: TimestampRow,
    *,
    timeout: float = PUBLISH_TIMEOUT,
) -> bool:
    """Run ``command`` with the head on stdin; True if it exited 0 (else logged)."""
    try:
        done = subprocess.run(
            list(command),
            input=message(vault, head, stamp),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = (
            f"did not finish within {timeout:g}s"
            if isinstance(exc, subprocess.TimeoutExpired)
            else str(exc)
        )
        event("timestamp.publish_failed", level=logging.ERROR, command=command[0], error=error)
        return False
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        event(
            "timestamp.publish_failed",
            level=logging.ERROR,
            command=command[0],
            error=f"exit {done.returncode}: {tail[0][:200]}",
        )
        return False
    event("timestamp.published", tree_size=head.tree_size, command=command[0])
    return True
