"""Folders named by their SPECIAL-USE role (RFC 6154) rather than by a name.

``quarantine_folder: '\\Junk'`` means the folder the server flags ``\\Junk``, whatever it is
called in the person's language ("Indésirables", "Spam", "[Gmail]/Spam"): guardmail never
guesses from English names. A role the server does not flag on any folder is a ConnectFailure
that says so (nothing is moved, and no folder named ``\\Junk`` is ever created).
"""

from __future__ import annotations

from imapclient import IMAPClient

from guardmail.errors import ConnectFailure


def is_role(name: str) -> bool:
    return name.startswith("\\")


def resolve(client: IMAPClient, name: str, *, account: str) -> str:
    """The folder ``name`` stands for: itself, or the folder flagged with that role."""
    if not is_role(name):
        return name
    wanted = name.casefold()
    for flags, _, folder in client.list_folders():
        said = (f.decode("ascii", "replace") if isinstance(f, bytes) else str(f) for f in flags)
        if any(flag.casefold() == wanted for flag in said):
            return str(folder)
    raise ConnectFailure(
        event="imap.folder_role_missing",
        reason=(
            f"account {account!r}: the server flags no folder as {name} (SPECIAL-USE); "
            "write the folder's name instead"
        ),
        refused=True,
    )
