"""Trusted timestamps in a bundle: the RFC 3161 tokens over the vault's signed tree heads that
date the exported entries, each checkable offline and with ``openssl ts -verify``.

Files (all listed in SHA256SUMS):

    log/timestamps/head-N.json  the signed bytes of the head over entries 1-N (what was stamped)
    log/timestamps/head-N.sig   its Ed25519 signature (log/public-key.pem)
    log/timestamps/head-N.tsr   the TSA's token (TimeStampResp, DER), over SHA-256(head-N.json)
    log/timestamps/tsa-ca.pem   the TSA root certificate(s) the tokens were checked against
    log/timestamps/list.txt     one line per token: "N EPOCH" (EPOCH: the token's time)
    log/timestamps.json         per token: N, its time, the TSA, and a consistency proof (RFC 9162)
                                from head N to the bundle's head (log/tree-head.json)

Which tokens: for every exported entry, the first token whose head covers it (the earliest time
the entry is proven to have existed), and the latest token. A head newer than the bundle's is
left out. An entry no token covers yet (archived after the last timestamp) has only the
signed head's own time, which the vault's owner wrote.
"""

from __future__ import annotations

import bisect
import json
from datetime import datetime
from typing import Any

from guardmail.core.merkle import Tree
from guardmail.export.evidence import Evidence
from guardmail.storage.base import TimestampRow, TreeHeadRow
from guardmail.vault.signing import signed_bytes
from guardmail.vault.store import Vault
from guardmail.vault.treelog import leaf

DIR = "log/timestamps"
INDEX = "log/timestamps.json"
CA = f"{DIR}/tsa-ca.pem"
LIST = f"{DIR}/list.txt"
STAMPS_FORMAT = "guardmail-timestamps/1"


def head_file(size: int, ext: str) -> str:
    return f"{DIR}/head-{size}.{ext}"


def chosen(stamps: list[TimestampRow], seqs: list[int]) -> list[TimestampRow]:
    """The tokens a bundle of entries ``seqs`` carries (module docstring), smallest first."""
    if not stamps:
        return []
    sizes = [s.tree_size for s in stamps]
    picked = {len(stamps) - 1}
    for seq in seqs:
        i = bisect.bisect_left(sizes, seq)
        if i < len(stamps):
            picked.add(i)
    return [stamps[i] for i in sorted(picked)]


def epoch(gen_time: str) -> int:
    return int(datetime.fromisoformat(gen_time).timestamp())


def stamp_files(vault: Vault, evidence: Evidence, head: TreeHeadRow) -> dict[str, bytes]:
    """The files above for a bundle whose signed head is ``head`` (none without tokens)."""
    stamps = [s for s in vault.timestamps() if s.tree_size <= head.tree_size]
    seqs = [i.seq for i in evidence.items] + [w.seq for w in evidence.warnings]
    picked = chosen(stamps, seqs)
    if not picked:
        return {}
    heads = {h.tree_size: h for h in vault.tree_heads()}
    tree = Tree(leaf(r) for r in vault.stored_rows()[: head.tree_size])
    files: dict[str, bytes] = {}
    listed: list[dict[str, Any]] = []
    roots: dict[str, None] = {}
    for stamp in picked:
        stamped = heads.get(stamp.tree_size)
        if stamped is None:
            continue  # a token whose head is gone: evidence verify reports the vault
        n = stamp.tree_size
        files[head_file(n, "json")] = signed_bytes(stamped)
        files[head_file(n, "sig")] = bytes.fromhex(stamped.signature)
        files[head_file(n, "tsr")] = stamp.token
        for block in stamp.ca_pem.split("-----END CERTIFICATE-----"):
            if block.strip():
                roots.setdefault(block.strip() + "\n-----END CERTIFICATE-----\n", None)
        listed.append(
            {
                "tree_size": n,
                "gen_time": stamp.gen_time,
                "tsa": stamp.tsa_url,
                "consistency": [h.hex() for h in tree.consistency_proof(n, head.tree_size)],
            }
        )
    if not listed:
        return {}
    files[CA] = "".join(roots).encode("ascii")
    files[LIST] = "".join(f"{s['tree_size']} {epoch(s['gen_time'])}\n" for s in listed).encode()
    index = {"format": STAMPS_FORMAT, "tree_size": head.tree_size, "stamps": listed}
    files[INDEX] = (json.dumps(index, sort_keys=True, indent=1) + "\n").encode()
    return files


def stamps_readme(files: dict[str, bytes]) -> str:
    """README.txt's section on the timestamps (step 6), or "" without any."""
    if INDEX not in files:
        return ""
    listed = json.loads(files[INDEX])["stamps"]
    last = listed[-1]
    n, at = last["tree_size"], epoch(last["gen_time"])
    return f"""\
6. Trusted timestamps. A time-stamping authority (TSA, RFC 3161) independent of the owner
   signed the time at which some of the vault's tree heads existed; each token in
   log/timestamps/ covers one head: head-N.tsr is the TSA's token over SHA-256 of
   head-N.json, the signed tree head over entries 1-N (its signature head-N.sig checks
   with log/public-key.pem as in step 5). Every entry with a seq up to N existed, unchanged,
   at the token's time. The latest token here, made {last["gen_time"]} by
    {last["tsa"]}
   covers entries 1-{n} and checks with

    openssl ts -verify -in {head_file(n, "tsr")} -data {head_file(n, "json")} \\
        -CAfile {CA} -attime {at}

   which must print "Verification: OK" (-attime checks the TSA's certificate at the token's
   own time, as it must be: a TSA certificate may expire years before the evidence is used).
   Every token, in the bundle's folder:

    while read n at; do
      openssl ts -verify -in log/timestamps/head-$n.tsr -data log/timestamps/head-$n.json \\
          -CAfile {CA} -attime $at >/dev/null 2>&1 && echo "head $n: OK" \\
          || echo "head $n: FAILED"
    done < {LIST}

   {CA} holds the TSA's root certificate as the owner's guardmail
   trusted it: compare it with the one the TSA publishes. log/timestamps.json holds, for
   each token, a consistency proof (RFC 9162 section 2.1.4) that head N is a prefix of
   log/tree-head.json's tree, so the items' inclusion proofs (step 5) reach back to the
   timestamped heads.

"""
