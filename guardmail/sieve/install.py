"""Installing the offender script next to the user's own, never replacing it.

The offender rules go into a script named ``guardmail``. A small wrapper, ``guardmail-main``,
includes it first and then the script that was active before (RFC 6609 ``include``), and is made
active. Offender mail is filed and stops there; all other mail reaches the user's own rules
unchanged. Running it again only updates ``guardmail``.
"""

from __future__ import annotations

from guardmail.errors import PeerError
from guardmail.sieve.managesieve import ManageSieve
from guardmail.sieve.script import quote

SCRIPT = "guardmail"
WRAPPER = "guardmail-main"


def wrapper_script(previous: str | None) -> str:
    then = f"your own script {quote(previous)}" if previous else "nothing (no script was active)"
    lines = [
        "# Written by `guardmail sieve install`: guardmail's offender rules first, then",
        f"# {then}.",
        'require ["include"];',
        f"include :personal {quote(SCRIPT)};",
    ]
    if previous:
        lines.append(f"include :personal {quote(previous)};")
    return "\n".join(lines) + "\n"


def install(client: ManageSieve, script: str) -> str:
    """Upload ``script`` as ``guardmail`` and make sure it runs first; say what was done."""
    client.putscript(SCRIPT, script)  # a script the server cannot compile is refused here
    active = next((name for name, is_active in client.listscripts() if is_active), None)
    if active == WRAPPER:
        return f"updated {SCRIPT!r}; {WRAPPER!r} was already active"
    if active == SCRIPT:
        active = None
    if "include" not in client.extensions:
        raise PeerError(
            f"the server has no Sieve include extension, so {SCRIPT!r} was uploaded but not "
            f"activated (activating it would replace {active!r}); merge it by hand"
        )
    client.putscript(WRAPPER, wrapper_script(active))
    client.setactive(WRAPPER)
    kept = f"then your script {active!r}" if active else "no other script was active"
    return f"installed {SCRIPT!r} and activated {WRAPPER!r} ({SCRIPT!r} first, {kept})"
