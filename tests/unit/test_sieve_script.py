"""Offender rules as Sieve: quoting, what is left to the daemon, and the require line."""

import pytest

from guardmail.core.rules import OffenderRule
from guardmail.sieve.script import export_script, offender_block, quote

ALL = ["fileinto", "mailbox", "envelope", "subaddress", "regex", "include"]


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("plain", '"plain"'), ('a"b', '"a\\"b"'), ("^x\\.y$", '"^x\\\\.y$"')],
)
def test_sieve_strings_escape_quotes_and_backslashes(text: str, quoted: str) -> None:
    assert quote(text) == quoted


@pytest.mark.parametrize(
    ("pattern", "left_out"),
    [
        ("re:^st[a4]lker[0-9]*@", False),
        ("re:^x\\.y@z$", False),
        ("re:\\d+@x", True),
        ("re:(?i)abc", True),
        ("re:a+?@x", True),
        ("*@[ab].example", True),
        ("*@burner.example", False),
    ],
)
def test_what_sieve_cannot_express_is_left_to_the_daemon(pattern: str, left_out: bool) -> None:
    block = offender_block(OffenderRule(name="X", patterns=(pattern,)), ALL)
    assert bool(block.left_out) is left_out
    assert bool(block.tests) is not left_out


def test_requires_only_what_it_uses_and_files_with_create() -> None:
    script = export_script(
        [OffenderRule(name="X", domains=("harass.example",))],
        folder="Quarantine",
        extensions=ALL,
        generated="Generated now.",
    )
    assert 'require ["fileinto", "mailbox"];' in script
    assert 'fileinto :create "Quarantine";' in script
    assert '"*.harass.example"' in script


def test_without_the_regex_extension_regexes_stay_with_the_daemon() -> None:
    block = offender_block(OffenderRule(name="X", patterns=("re:^a@b$",)), ["fileinto"])
    assert block.tests == () and "no regex extension" in block.left_out[0]
