# SPDX-License-Identifier: GPL-3.0-or-later
"""Gajim glue: remember incoming message stanzas, add the menu items and the app action.

Gajim 1.7 has no menu extension point, so the chat list's and the message row's menu builders
are wrapped where their modules imported them (private layout: checked for Gajim 1.7 only).
The app action ``app.guardmail-report`` takes a JSON target (account, jid, optional
message_id / stanza_id); it is exported on D-Bus like every Gajim app action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gajim.common import app, ged
from gajim.plugins import GajimPlugin
from gi.repository import Gio, GLib

from .reporting import (
    Kept,
    ReportError,
    StanzaStore,
    Target,
    offender_names,
    report,
    socket_path,
)

log = logging.getLogger("gajim.p.guardmail_report")

ACTION = "guardmail-report"
LABEL = "Block and keep as evidence"
NS_SID = "urn:xmpp:sid:0"


def remember(store: StanzaStore, account: str, account_jid: str, stanza: Any) -> bool:
    """Keep a message stanza (an nbxmpp Node) from someone else; True if kept."""
    if stanza.getName() != "message":
        return False
    sender = stanza.getAttr("from")
    if sender is None or str(sender).split("/", 1)[0].casefold() == account_jid.casefold():
        return False
    stanza_id = None
    for sid in stanza.getTags("stanza-id", namespace=NS_SID):
        if str(sid.getAttr("by") or "").casefold() == account_jid.casefold():
            stanza_id = sid.getAttr("id")
    store.add(
        account,
        str(sender),
        Kept(message_id=stanza.getAttr("id"), stanza_id=stanza_id, xml=str(stanza)),
    )
    return True


def _menu_item(target: Target, label: str = LABEL) -> Gio.MenuItem:
    item = Gio.MenuItem.new(label, None)
    item.set_action_and_target_value(f"app.{ACTION}", GLib.Variant("s", target.encode()))
    return item


def _report_items(target: Target, offenders: list[str]) -> list[Gio.MenuItem]:
    """The default report, then "add to existing offender" for each one guardmail knows."""
    items = [_menu_item(target)]
    if offenders:
        sub = Gio.Menu()
        for name in offenders:
            aliased = Target(**{**target.__dict__, "offender": name})
            sub.append_item(_menu_item(aliased, f"Add to {name}"))
        items.append(Gio.MenuItem.new_submenu("Block as alias of an existing offender", sub))
    return items


class GuardmailReportPlugin(GajimPlugin):
    def init(self) -> None:
        self.description = "Block a contact and keep their messages as evidence (guardmail)"
        self.config_dialog = None
        self.config_default_values = {"socket": ("", "guardmail's <state_dir>/control.sock")}
        self.store = StanzaStore()
        self.events_handlers = {
            "stanza-received": (ged.PRECORE, self._on_stanza_received),
            "signed-in": (ged.GUI2, self._on_signed_in),
        }
        self._unpatch: list[Callable[[], None]] = []
        self.offenders: list[str] = []  # for the "add to existing offender" submenu

    def activate(self) -> None:
        action = Gio.SimpleAction.new(ACTION, GLib.VariantType.new("s"))
        action.connect("activate", self._on_report_action)
        app.app.add_action(action)
        self._patch_menus()
        self._refresh_offenders()
        log.info("guardmail_report activated")

    def _refresh_offenders(self) -> None:
        try:
            self.offenders = offender_names(socket_path(str(self.config["socket"])))
        except ReportError as exc:
            log.info("guardmail_report: no offender list yet: %s", exc)

    def deactivate(self) -> None:
        app.app.remove_action(ACTION)
        for undo in self._unpatch:
            undo()
        self._unpatch = []

    def _on_stanza_received(self, event: Any) -> None:
        remember(self.store, event.account, app.get_jid_from_account(event.account), event.stanza)

    def _on_signed_in(self, event: Any) -> None:
        log.info("guardmail_report: watching %s", app.get_jid_from_account(event.account))

    def _on_report_action(self, _action: Gio.SimpleAction, param: GLib.Variant) -> None:
        try:
            target = Target.decode(param.get_string())
            path = socket_path(str(self.config["socket"]))
            results = report(
                self.store, path, target, account_jid=app.get_jid_from_account(target.account)
            )
        except ReportError as exc:
            log.error("guardmail_report: not reported: %s", exc)
            return
        for r in results:
            log.info(
                "guardmail_report: kept as evidence: vault entry %s sha256 %s offender %s",
                r["seq"],
                r["sha256"],
                r["offender"],
            )
            if r.get("file_loaded") is False:
                log.error("guardmail_report: kept as evidence, but NOT blocked: %s", r.get("hint"))
        self._refresh_offenders()

    def _patch_menus(self) -> None:
        from gajim.gtk import chat_list_row
        from gajim.gtk.conversation.rows import message as message_row

        chat_menu = chat_list_row.get_chat_list_row_menu
        row_menu = message_row.get_chat_row_menu

        def chat_list_menu(workspace_id: str, account: str, jid: Any, pinned: bool) -> Any:
            menu = chat_menu(workspace_id, account, jid, pinned)
            for item in _report_items(Target(account=account, jid=str(jid)), self.offenders):
                menu.append_item(item)
            return menu

        def chat_row_menu(
            contact: Any,
            name: str,
            text: str,
            timestamp: Any,
            message_id: str | None,
            stanza_id: str | None,
            log_line_id: Any,
        ) -> Any:
            menu = row_menu(contact, name, text, timestamp, message_id, stanza_id, log_line_id)
            target = Target(
                account=contact.account,
                jid=str(contact.jid),
                message_id=message_id,
                stanza_id=stanza_id,
            )
            for item in _report_items(target, self.offenders):
                menu.append_item(item)
            return menu

        chat_list_row.get_chat_list_row_menu = chat_list_menu
        message_row.get_chat_row_menu = chat_row_menu
        self._unpatch = [
            lambda: setattr(chat_list_row, "get_chat_list_row_menu", chat_menu),
            lambda: setattr(message_row, "get_chat_row_menu", row_menu),
        ]
