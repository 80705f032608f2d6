"""The SQLite tables of the storage seam (``guardmail.storage.sqlite``): the journal, warnings,
cursors and checkpoints, offender ids, relayed copies, tree heads and their timestamps, alias
features. Every statement is ``IF NOT EXISTS``: run at each open, an older database gains the
tables it lacks and nothing else moves.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    tenant     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    sha256     TEXT,
    source_ref TEXT,
    scope      TEXT,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX IF NOT EXISTS journal_archived
    ON journal (tenant, sha256, scope) WHERE kind = 'archived';
CREATE TABLE IF NOT EXISTS warnings (
    tenant      TEXT    NOT NULL,
    offender    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    PRIMARY KEY (tenant, offender)
);
CREATE INDEX IF NOT EXISTS journal_archived_ref
    ON journal (tenant, source_ref) WHERE kind = 'archived';
CREATE TABLE IF NOT EXISTS cursors (
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, source, name)
);
CREATE TABLE IF NOT EXISTS offender_ids (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    identities TEXT NOT NULL,
    first_name TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS relayed (
    tenant   TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    copy     TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (tenant, queue_id, sha256, copy)
);
CREATE INDEX IF NOT EXISTS relayed_at ON relayed (tenant, at);
CREATE INDEX IF NOT EXISTS journal_action
    ON journal (tenant, sha256) WHERE kind = 'action';
CREATE TABLE IF NOT EXISTS tree_heads (
    tenant    TEXT    NOT NULL,
    tree_size INTEGER NOT NULL,
    root_hash TEXT    NOT NULL,
    time      TEXT    NOT NULL,
    signature TEXT    NOT NULL,
    PRIMARY KEY (tenant, tree_size)
);
CREATE TABLE IF NOT EXISTS alias_features (
    tenant   TEXT NOT NULL,
    offender TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    features TEXT NOT NULL,
    PRIMARY KEY (tenant, offender, sha256)
);
CREATE TABLE IF NOT EXISTS not_aliases (
    tenant   TEXT NOT NULL,
    address  TEXT NOT NULL,
    offender TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (tenant, address, offender)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    tenant      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    PRIMARY KEY (tenant, source, folder)
);
"""

# Its own statement, so that it reads as the migration that added it: RFC 3161 tokens over
# signed tree heads (guardmail.vault.timestamps).
TIMESTAMP_SCHEMA = """
CREATE TABLE IF NOT EXISTS tree_head_timestamps (
    tenant    TEXT    NOT NULL,
    tree_size INTEGER NOT NULL,
    token     BLOB    NOT NULL,
    gen_time  TEXT    NOT NULL,
    tsa_url   TEXT    NOT NULL,
    ca_pem    TEXT    NOT NULL,
    PRIMARY KEY (tenant, tree_size)
);
"""
