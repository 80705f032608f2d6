"""The confusables table is imported at the first non-ASCII text folded (issue 27: ~3 MB an
ISP's milter holds for nothing while its mail's addresses and names are ASCII)."""

from __future__ import annotations

import subprocess
import sys

from guardmail.core.confusables import _ASCII_FOLD, _fold_once, fold


def test_the_written_out_ascii_folds_are_the_tables() -> None:
    assert _ASCII_FOLD == {i: _fold_once(chr(i)) for i in range(128)}
    assert fold("Mallory%01@EXAMPLE.test") == fold(_fold_once("Mallory%01@EXAMPLE.test"))


def test_the_table_loads_at_the_first_non_ascii_text_only() -> None:
    probe = (
        "import sys, guardmail.daemon.supervisor\n"
        "from guardmail.core.confusables import ascii_lookalike, fold, lookalike_letters\n"
        "from guardmail.core.identity import normalize_address, normalize_display_name\n"
        "seen = ['guardmail.core.confusables_data' in sys.modules]\n"
        "assert fold('Stalker.01@Example.TEST') == 'stalker.ol@exarnple.test'\n"
        "normalize_address('ex@Bad.Example'); normalize_display_name('Ex Partner')\n"
        "assert ascii_lookalike('stalker') == 'stalker' and lookalike_letters('x') == ()\n"
        "seen.append('guardmail.core.confusables_data' in sys.modules)\n"
        "assert fold('st\\u0430lker') == fold('stalker')\n"
        "seen.append('guardmail.core.confusables_data' in sys.modules)\n"
        "print(*seen)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]
