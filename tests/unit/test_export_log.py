"""The signed log in an export bundle: each item's inclusion proof against the vault's latest
signed tree head, checked offline by guardmail and, for the signature, by openssl as printed."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.core.merkle import leaf_hash, verify_inclusion
from guardmail.export.proofs import HEAD_JSON, PROOFS
from guardmail.export.verify import verify_bundle
from guardmail.vault.head import HEAD_FILE
from guardmail.vault.journal import GENESIS, chain_hash
from guardmail.vault.signing import KEY_FILE
from guardmail.vault.store import Vault
from tests.unit.test_export import NOW, Case, export, files_of, make_case, resum, rewrite


@pytest.fixture
def case(tmp_path: Path) -> Iterator[Case]:
    c = make_case(tmp_path)
    yield c
    c.storage.close()


def test_every_exported_file_has_a_proof_that_verifies_from_its_journal_entry(
    case: Case,
) -> None:
    result = export(case, "bundle")
    files = files_of(result.path)
    assert verify_bundle(result.path) == []
    head = json.loads(files[HEAD_JSON])
    bodies = {
        e["seq"]: e["body"] for e in map(json.loads, files["journal.jsonl"].decode().splitlines())
    }
    manifest = json.loads(files["manifest.json"])
    proofs = json.loads(files[PROOFS])["proofs"]
    exported = [i["file"] for i in manifest["items"]] + [w["file"] for w in manifest["warnings"]]
    assert [p["file"] for p in proofs] == exported and exported
    for p in proofs:
        leaf = hashlib.sha256(b"\x00" + bodies[p["seq"]].encode()).digest()
        assert leaf == leaf_hash(bodies[p["seq"]].encode())
        assert verify_inclusion(
            index=p["seq"] - 1,
            size=head["tree_size"],
            leaf=leaf,
            path=[bytes.fromhex(h) for h in p["path"]],
            root=bytes.fromhex(head["root_hash"]),
        )
    assert manifest["log"]["tree_size"] == head["tree_size"]


def test_the_readme_openssl_command_verifies_the_signature_as_printed(case: Case) -> None:
    result = export(case, "bundle")
    readme = (result.path / "README.txt").read_text()
    m = re.search(r"\n    (openssl pkeyutl .*?\\\n\s+.*?)\n", readme)
    assert m is not None
    command = m.group(1)
    done = subprocess.run(command, shell=True, cwd=result.path, capture_output=True, text=True)
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout
    (result.path / HEAD_JSON).write_bytes(
        (result.path / HEAD_JSON).read_bytes().replace(b'"tree_size":', b'"tree_size":1')
    )
    done = subprocess.run(command, shell=True, cwd=result.path, capture_output=True, text=True)
    assert done.returncode != 0


def test_the_key_fingerprint_matches_evidence_key(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    result = export(case, "bundle")
    assert main(["-c", str(case.config), "evidence", "key"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert (result.path / "log" / "public-key.pem").read_text() in out
    fingerprint = json.loads((result.path / "manifest.json").read_bytes())["log"]["key_fingerprint"]
    assert f"fingerprint (SHA-256 of the raw Ed25519 key): {fingerprint}\n" in out
    assert fingerprint in (result.path / "README.txt").read_text()


def test_a_rewritten_entry_with_its_chain_recomputed_fails_its_inclusion_proof(
    case: Case,
) -> None:
    """The forger edits an item's journal entry in the bundle and recomputes the chain, the
    manifest's ends and SHA256SUMS: every hash check passes, the signed log does not."""
    result = export(case, "bundle")
    files = files_of(result.path)
    lines = [json.loads(x) for x in files["journal.jsonl"].decode().splitlines()]
    manifest = json.loads(files["manifest.json"])
    target = manifest["items"][0]
    prev = lines[0]["prev_hash"]
    for e in lines:
        if e["seq"] == target["seq"]:
            e["body"] = e["body"].replace('"Jo Stalker"', '"Someone Else"')
        e["prev_hash"], e["hash"] = prev, chain_hash(prev, e["body"])
        prev = e["hash"]
    files["journal.jsonl"] = "".join(json.dumps(e, sort_keys=True) + "\n" for e in lines).encode()
    manifest["journal"]["last_hash"] = prev
    files["manifest.json"] = json.dumps(manifest, sort_keys=True, indent=1).encode()
    resum(files)
    rewrite(result.path, files)
    assert verify_bundle(result.path) == [
        f"log: {target['file']}: journal entry seq {target['seq']} is not proven to be in the "
        f"signed tree head over entries 1-{json.loads(files[HEAD_JSON])['tree_size']}"
    ]


def test_a_forged_tree_head_fails_its_signature_and_a_changed_proof_node_fails(
    case: Case,
) -> None:
    result = export(case, "bundle")
    files = files_of(result.path)
    proofs = json.loads(files[PROOFS])
    node = proofs["proofs"][1]["path"][0]
    proofs["proofs"][1]["path"][0] = ("0" if node[0] != "0" else "1") + node[1:]
    files[PROOFS] = json.dumps(proofs).encode()
    head = json.loads(files[HEAD_JSON])
    files[HEAD_JSON] = files[HEAD_JSON].replace(head["time"].encode(), b"2020-01-01T00:00:00+00:00")
    resum(files)
    rewrite(result.path, files)
    problems = verify_bundle(result.path)
    assert problems[0] == (
        "log: log/tree-head.sig does not verify log/tree-head.json with log/public-key.pem"
    )
    assert problems[1:] == [
        f"log: {proofs['proofs'][1]['file']}: journal entry seq {proofs['proofs'][1]['seq']} "
        f"is not proven to be in the signed tree head over entries 1-{head['tree_size']}"
    ]


def test_a_bundle_from_before_the_signed_log_still_verifies_without_one(case: Case) -> None:
    result = export(case, "bundle")
    files = {n: d for n, d in files_of(result.path).items() if not n.startswith("log/")}
    manifest = json.loads(files["manifest.json"])
    del manifest["log"]
    manifest["format"] = "guardmail-evidence-bundle/1"
    files["manifest.json"] = json.dumps(manifest).encode()
    resum(files)
    rewrite(result.path, files)
    assert verify_bundle(result.path) == []
    manifest["format"] = "guardmail-evidence-bundle/2"  # a current bundle with its log cut
    files["manifest.json"] = json.dumps(manifest).encode()
    resum(files)
    rewrite(result.path, files)
    assert [p for p in verify_bundle(result.path) if p.startswith("missing: log/")]


def rewrite_and_resign(case: Case, seq: int, *, new_key: bool) -> None:
    """The attacker who can read the vault directory: entry ``seq`` rewritten, the chain and
    HEAD recomputed, every head dropped and the forged history signed again with the vault's key
    (or with a new one)."""
    db = case.storage._conn
    db.execute(
        "UPDATE journal SET body = replace(body, '\"Jo Stalker\"', '\"Someone Else\"') "
        "WHERE seq = ?",
        (seq,),
    )
    prev = GENESIS
    for row in case.vault.stored_rows():
        prev_hash, prev = prev, chain_hash(prev, row.body)
        db.execute("UPDATE journal SET prev_hash = ?, hash = ? WHERE seq = ?",
                   (prev_hash, prev, row.seq))  # fmt: skip
    (case.vault.root / HEAD_FILE).write_text(f"{row.seq} {prev}\n")
    db.execute("DELETE FROM tree_heads")
    db.execute("DELETE FROM cursors WHERE source = 'vault'")
    if new_key:
        (case.vault.root / KEY_FILE).unlink()
    Vault(case.vault.root, case.storage, "jane").seal(now=NOW)


@pytest.mark.parametrize("new_key", [False, True])
def test_a_history_rewritten_and_resigned_is_caught_by_a_head_handed_out_before(
    case: Case, capsys: pytest.CaptureFixture[str], new_key: bool
) -> None:
    bundle = export(case, "bundle").path
    seq = json.loads((bundle / "manifest.json").read_bytes())["items"][0]["seq"]
    head = json.loads((bundle / HEAD_JSON).read_bytes())
    size = head["tree_size"]
    rewrite_and_resign(case, seq, new_key=new_key)
    assert main(["-c", str(case.config), "evidence", "verify"]) == 0  # alone, it cannot tell
    capsys.readouterr()
    code = main(["-c", str(case.config), "evidence", "verify", "--against", str(bundle)])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        f"guardmail: vault jane: entry {size}: the head over entries 1-{size} from {bundle} "
        f"(signed {head['time']}): no consistency proof joins it to the journal: "
        f"entries 1-{size} were rewritten after it was handed out\n"
    ) in err
    assert ("its head was signed by another key than the vault's" in err) == new_key


def test_verify_against_an_untouched_vault_passes_and_a_non_bundle_is_a_usage_error(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = export(case, "bundle").path
    case.vault.record("action", {"later": True}, now=NOW)  # the log grew since: still consistent
    assert main(["-c", str(case.config), "evidence", "verify", "--against", str(bundle)]) == 0
    assert main(["-c", str(case.config), "evidence", "verify", "--against", str(case.root)]) == 2
    assert "no signed tree head to check against" in capsys.readouterr().err
