"""DKIM in a bundle: what was checked of each exported mail item when it arrived, and the key
records fetched then, so that a signature checks offline years later (guardmail.vault.receipts).

Files (all listed in SHA256SUMS like every other file):

    dkim/checks.json      per exported item: when it was checked, through which resolver, each
                          signature's d=, s=, a=, result and reason and the key file it used;
                          the ARC result; the trusted server's Authentication-Results
    dkim/keys/SHA256.txt  each key record exactly as fetched (the TXT strings joined); its name
                          is the SHA-256 of its bytes

``check_dkim`` verifies every item's DKIM signatures again from those files alone: a signature
that passed at receipt must pass from its snapshot. Problems start with ``dkim:``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from guardmail.export.evidence import Evidence
from guardmail.vault.dkimcheck import recheck
from guardmail.vault.receipt_records import stored
from guardmail.vault.store import Vault

CHECKS = "dkim/checks.json"
KEYS_DIR = "dkim/keys/"
CHECKS_FORMAT = "guardmail-dkim-checks/1"
_KEY_NAME = re.compile(r"^dkim/keys/([0-9a-f]{64})\.txt$")


def dkim_files(vault: Vault, evidence: Evidence) -> dict[str, bytes]:
    """The bundle's dkim/ files for the exported mail items ({} if none was checked)."""
    items: list[dict[str, Any]] = []
    keys: dict[str, dict[str, Any]] = {}
    files: dict[str, bytes] = {}
    for item in evidence.items:
        if item.channel == "xmpp":
            continue
        kept = stored(vault.storage, vault.tenant, item.seq)
        if kept.check is None:
            items.append({"file": item.file, "seq": item.seq, "checked": False})
            continue
        for sha, key in kept.keys.items():
            name = f"{KEYS_DIR}{sha}.txt"
            files[name] = key.record
            keys[sha] = {
                "file": name,
                "name": f"{key.selector}._domainkey.{key.domain}",
                "sha256": sha,
                "fetched_at": key.fetched_at,
                "resolver": key.resolver,
            }
        c = kept.check
        items.append(
            {
                "file": item.file,
                "seq": item.seq,
                "checked": True,
                "checked_at": c.checked_at,
                "resolver": c.resolver,
                "arc": {"result": c.arc_result, "reason": c.arc_reason},
                "authserv_id": c.authserv_id,
                "authentication_results": c.auth_results,
                "note": c.note,
                "signatures": [
                    {
                        "kind": r.kind,
                        "d": r.domain,
                        "s": r.selector,
                        "a": r.algorithm,
                        "result": r.result,
                        "reason": r.reason,
                        "key": keys[r.key_sha256]["file"] if r.key_sha256 in keys else None,
                    }
                    for r in kept.results
                ],
            }
        )
    if not any(i["checked"] for i in items):
        return {}
    body = {"format": CHECKS_FORMAT, "items": items, "keys": sorted(keys.values(), key=_by_file)}
    files[CHECKS] = (json.dumps(body, sort_keys=True, indent=1) + "\n").encode()
    return files


def _by_file(key: dict[str, Any]) -> str:
    return str(key["file"])


def check_dkim(read: Callable[[str], bytes], present: set[str]) -> list[str]:
    """Every problem of the bundle's dkim/ files (none if it has none)."""
    if CHECKS not in present:
        return []
    try:
        body = json.loads(read(CHECKS))
        if not isinstance(body, dict) or body.get("format") != CHECKS_FORMAT:
            raise ValueError(f"not a {CHECKS_FORMAT} object")
        items = [i for i in body.get("items", []) if isinstance(i, dict)]
    except ValueError as exc:
        return [f"dkim: {CHECKS} cannot be read ({exc})"]
    problems: list[str] = []
    records: dict[str, bytes] = {}
    for key in body.get("keys", []):
        name, file = str(key.get("name", "")), str(key.get("file", ""))
        m = _KEY_NAME.match(file)
        if m is None or file not in present:
            problems.append(f"dkim: key file {file!r} of {name} is missing or misnamed")
            continue
        data = read(file)
        if hashlib.sha256(data).hexdigest() != m.group(1):
            problems.append(f"dkim: {file} does not hash to its name (the key record changed)")
            continue
        records[name.lower()] = data
    for item in items:
        if not item.get("checked"):
            continue
        file = str(item.get("file", ""))
        if file not in present:
            problems.append(f"dkim: {file} (named in {CHECKS}) is missing")
            continue
        now = recheck(read(file), records).signatures
        then = [s for s in item.get("signatures", []) if isinstance(s, dict)]
        for a, b in zip(then, now, strict=False):
            if a.get("result") == "pass" and b.result != "pass":
                problems.append(
                    f"dkim: {file}: {a.get('kind')} d={a.get('d')} s={a.get('s')} passed at "
                    f"receipt and is {b.result} from its key snapshot ({b.reason})"
                )
        if len(then) != len(now):
            problems.append(f"dkim: {file}: {len(then)} signatures kept, {len(now)} found now")
    return problems


DKIM_CHECK = """\
python3 - <<'EOF'
import json, dkim
c = json.load(open("dkim/checks.json", encoding="utf-8"))
keys = {k["name"]: open(k["file"], "rb").read() for k in c["keys"]}
def txt(name, timeout=5):
    return keys.get(name.decode().rstrip(".").lower())
for item in c["items"]:
    if not item["checked"]:
        continue
    d = dkim.DKIM(open(item["file"], "rb").read())
    sigs = [s for s in item["signatures"] if s["kind"] == "dkim"]
    for n, s in enumerate(sigs):
        ok = d.verify(idx=n, dnsfunc=txt)
        now = "pass" if ok else "fail"
        print(item["file"], "d=" + s["d"], "s=" + s["s"], "at receipt:", s["result"], "now:", now)
EOF"""


def dkim_readme(step: int = 6) -> str:
    """README.txt's section on the DKIM key snapshots (step ``step``: after the timestamps',
    when there are any)."""
    return f"""\
{step}. DKIM, checked when each e-mail arrived. dkim/checks.json says, for each item, what its DKIM
   signatures and ARC chain gave when guardmail archived it (d= the signing domain, s= the
   selector, a= the algorithm, the result and why), and the Authentication-Results header of
   the receiving server the protected person trusts. Providers change and even publish their
   old signing keys, so the key record each signature used was kept as fetched from DNS:
   dkim/keys/SHA256.txt, named by the SHA-256 of its bytes (sha256sum dkim/keys/* shows it).
   With Python 3 and dkimpy (pip install dkimpy) each signature checks again offline, from
   those records only (no DNS):

{_indent(DKIM_CHECK)}

   A signature that said "pass" at receipt must say "pass" now. "guardmail evidence verify
   BUNDLE" does the same check.
"""


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in text.splitlines())
