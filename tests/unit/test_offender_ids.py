"""Offender ids: the person behind a label, fixed at first sight; the ledger moves onto them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.config.settings import OffenderConfig, Settings
from guardmail.core.offender_ids import Entry, Known, assign, identities
from guardmail.daemon.tenant import open_tenant
from guardmail.offender_registry import resolve
from guardmail.storage.base import WarningRow
from guardmail.storage.sqlite import SQLiteStorage

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(name: str, *addresses: str, explicit: str | None = None) -> Entry:
    return Entry(name=name, explicit_id=explicit, identities=identities(addresses=addresses))


def known(id_: str, name: str, *addresses: str) -> Known:
    return Known(
        id=id_,
        name=name.casefold(),
        identities=identities(addresses=addresses),
        first_name=name,
        first_seen="t0",
    )


def fresh() -> itertools.count[int]:
    return itertools.count(1)


@pytest.mark.parametrize(
    ("entries", "rows", "expected"),
    [
        # first sight: a new id
        ([entry("Stalker", "s@x.example")], [], {"stalker": "new-1"}),
        # the same name and addresses: the same id
        (
            [entry("Stalker", "s@x.example")],
            [known("o-1", "Stalker", "s@x.example")],
            {"stalker": "o-1"},
        ),
        # renamed, addresses unchanged: the same id
        (
            [entry("Jo Renamed", "s@x.example")],
            [known("o-1", "Stalker", "s@x.example")],
            {"jo renamed": "o-1"},
        ),
        # addresses edited, name unchanged: the same id
        (
            [entry("Stalker", "s@x.example", "t@x.example")],
            [known("o-1", "Stalker", "s@x.example")],
            {"stalker": "o-1"},
        ),
        # renamed and edited at once: a new person
        (
            [entry("Other", "t@x.example")],
            [known("o-1", "Stalker", "s@x.example")],
            {"other": "new-1"},
        ),
        # renamed while a newcomer takes the old name: the addresses follow the person
        (
            [entry("Stalker", "new@x.example"), entry("Jo", "s@x.example")],
            [known("o-1", "Stalker", "s@x.example")],
            {"jo": "o-1", "stalker": "new-1"},
        ),
        # an explicit id wins, and entries sharing it are one person
        (
            [
                entry("Stalker", "s@x.example", explicit="jo"),
                entry("Stalker (reported)", "t@x.example", explicit="jo"),
            ],
            [known("o-1", "Stalker", "s@x.example")],
            {"stalker": "jo", "stalker (reported)": "jo"},
        ),
        # a legacy "(reported)" entry without id is its base offender
        (
            [entry("Stalker (reported)", "t@x.example"), entry("Stalker", "s@x.example")],
            [known("o-1", "Stalker", "s@x.example")],
            {"stalker": "o-1", "stalker (reported)": "o-1"},
        ),
    ],
)
def test_offender_ids_follow_the_person_not_the_label(
    entries: list[Entry], rows: list[Known], expected: dict[str, str]
) -> None:
    counter = fresh()
    ids, _ = assign(entries, rows, new_id=lambda: f"new-{next(counter)}", now="t1")
    assert ids == expected


def test_the_id_table_remembers_the_last_name_so_rename_then_edit_keeps_the_id() -> None:
    counter = fresh()
    new = lambda: f"new-{next(counter)}"  # noqa: E731
    ids, rows = assign([entry("Stalker", "s@x.example")], [], new_id=new, now="t0")
    ids2, rows2 = assign([entry("Jo", "s@x.example")], rows, new_id=new, now="t1")
    merged = {r.id: r for r in [*rows, *rows2]}
    ids3, _ = assign([entry("Jo", "j@x.example")], list(merged.values()), new_id=new, now="t2")
    assert ids["stalker"] == ids2["jo"] == ids3["jo"] == "new-1"
    assert merged["new-1"].first_name == "Stalker"


def offender(name: str, *addresses: str) -> OffenderConfig:
    return OffenderConfig(name=name, addresses=list(addresses))


def legacy_row(key: str, state: str) -> WarningRow:
    return WarningRow(
        tenant="t",
        offender=key,
        state=state,
        recipient="s@x.example",
        message_id="<1@x>",
        sha256="0" * 64,
        started_at="2026-11-01T00:00:00+00:00",
    )


def test_ledger_rows_keyed_by_name_move_to_the_id_once_and_survive_a_rename(
    tmp_path: Path,
) -> None:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    try:
        with storage.transaction() as tx:
            tx.put_warning(legacy_row("stalker", "sent"))
            tx.put_warning(legacy_row("stalker (reported)", "failed"))
            tx.put_warning(legacy_row("gone", "sent"))
        ids = resolve(
            storage,
            "t",
            [offender("Stalker", "s@x.example"), offender("Stalker (reported)", "t@x.example")],
            now=NOW,
        )
        assert ids["stalker"] == ids["stalker (reported)"]
        with storage.transaction() as tx:
            keys = {r.offender: r.state for r in tx.warnings("t")}
        # the stronger row holds the id; the weaker stays under its old name; unknown ones stay
        assert keys == {ids["stalker"]: "sent", "stalker (reported)": "failed", "gone": "sent"}
        renamed = resolve(storage, "t", [offender("Jo", "s@x.example")], now=NOW)
        assert renamed["jo"] == ids["stalker"]
        with storage.transaction() as tx:
            assert tx.warning("t", renamed["jo"]) is not None
    finally:
        storage.close()


def test_opening_a_tenant_fixes_the_ids_of_offenders_seen_for_the_first_time(
    tmp_path: Path,
) -> None:
    first = Settings(state_dir=tmp_path, offenders=[offender("Stalker", "s@x.example")])
    open_tenant(first).close()  # the daemon starts, sees Stalker, nothing is blocked yet
    storage = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    try:
        with storage.transaction() as tx:
            (row,) = tx.offender_ids("default")
    finally:
        storage.close()
    assert (row.first_name, row.name) == ("Stalker", "stalker")
    renamed = Settings(state_dir=tmp_path, offenders=[offender("Jo", "s@x.example")])
    tenant = open_tenant(renamed)
    try:
        assert tenant.warner.offender_id("Jo") == row.id
    finally:
        tenant.close()
