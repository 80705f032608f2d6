"""Normalising addresses, JIDs, domains and display names so that evasions compare equal.

An offender blocked as ``stalker@bücher.example`` tries ``Stalker+x@BÜCHER.example.``,
``"stalker"@xn--bcher-kva.example``, ``st\u0430lker@bücher.example`` (Cyrillic a), fullwidth
letters, or a zero-width space in the middle. This module turns each of those into the same
comparison key.

The *normalised* form (``normalize_*``, ``NormalizedAddress.address``) undoes what the
receiving side ignores anyway (case, sub-address tags, Gmail's dots, googlemail.com, punycode,
trailing dots, quoting, comments, compatibility forms) and removes invisible characters. It is
still what a person would read as the address, so verdicts show it. The *folded* key
(``NormalizedAddress.key``) is ``fold`` of it (core/confusables.py, which also holds the ASCII
look-alike form): only for comparing, never for display. Both are pure functions of their input.

Invariants:

- Total: every function accepts any ``str`` (NUL, lone surrogates, megabytes of junk) and never
  raises. What is not an address gives ``None``; anything else gives a best-effort string.
- Stable: ``normalize_domain`` and ``normalize_display_name`` give their own output
  back unchanged, and casefolding an address first (as ``rules.py`` does for the identities it
  reads, not for the configured ones) does not change its key.
- Matching errs towards "same": a ``+tag`` is dropped on every domain, not only where the
  server is known to support sub-addressing, because a missed offender costs more than a
  spurious match on someone who already shares the offender's mailbox name.
- Default-ignorable code points (zero-width spaces and joiners, bidi controls, soft hyphen,
  variation selectors, Hangul fillers, tag characters) are removed everywhere: they render as
  nothing, so two strings that differ only in them look identical.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import idna

from guardmail.core.confusables import fold, remove_invisible

# Label separators that UTS #46 treats as a full stop and NFKC leaves alone (U+FF0E and U+FF61
# become "." and U+3002 under NFKC).
_IDEOGRAPHIC_FULL_STOP = "\u3002"
# Quotes people and mail clients put around a display name; stripping them is not a change of name.
_NAME_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a"
# An ASCII addr-spec without quotes, comments, brackets or spaces: the fast path's domain.
_SIMPLE_ADDRESS = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+)@([A-Za-z0-9.-]+)")
# What the parsers of quoting, comments and angle brackets act on: an address with none of it
# is its own parse.
_SYNTAX = re.compile(r'["()<>\\]')
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_GMAIL = "gmail.com"
_ACE_PREFIX = "xn--"
# DNS limits (RFC 1035): a label has at most 63 octets, a name at most 127 labels. Labels past
# them are not decoded, since punycode decoding is quadratic and a header can hold a megabyte.
_MAX_LABEL_LENGTH = 63
_MAX_LABELS = 127
# Longest parent domain domain_suffixes gives: a 253-octet DNS name, decoded and folded (which can
# double some letters, "m" -> "rn"), with room to spare.
_MAX_SUFFIX_LENGTH = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalizedAddress:
    """A mail address or bare JID after normalisation.

    ``local`` is the normalised local part (``""`` for a domain-only JID such as a server or
    component); ``domain`` is ``normalize_domain`` of the domain part, never empty.
    """

    local: str
    domain: str

    @property
    def address(self) -> str:
        """``local@domain``, or the domain alone when there is no local part: for display."""
        return f"{self.local}@{self.domain}" if self.local else self.domain

    @property
    def key(self) -> str:
        """The confusable-folded address: equal keys mean "the same sender" for exact rules."""
        return fold(self.address)


def _nfkc_casefold(text: str) -> str:
    # NFKC again after casefolding: casefold can produce sequences NFKC would recompose
    # ("\u01f0" casefolds to "j\u030c"), and normalised forms should themselves be NFKC.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _decode_label(label: str) -> str:
    """Unicode form of an A-label; anything that is not a decodable A-label unchanged."""
    if (
        len(label) > _MAX_LABEL_LENGTH
        or not label.isascii()
        or not label.lower().startswith(_ACE_PREFIX)
    ):
        return label
    ace = label.lower()
    try:
        decoded = idna.decode(ace)
    except UnicodeError:  # idna.IDNAError included
        # IDNA2008 refuses some labels that exist and resolve (emoji, symbols); the stdlib's
        # IDNA2003 codec still decodes them, and the offender can register them.
        try:
            decoded = ace.encode("ascii").decode("idna")
        except UnicodeError:
            return label
    return decoded or label


def normalize_domain(domain: str) -> str:
    """The Unicode, case-folded form of a domain, so punycode and Unicode spellings are equal.

    Surrounding whitespace and trailing dots (the root) are dropped; an address literal
    ``[192.0.2.1]`` loses its brackets but is otherwise only case-folded; each ``xn--`` label is
    decoded to Unicode (labels that do not decode stay as they are). Empty for an empty or
    all-dots domain. Never raises.
    """
    if len(domain) > _MAX_CACHED_DOMAIN:
        return _normalize_domain(domain)
    return _normalize_domain_memo(domain)


def _normalize_domain(domain: str) -> str:
    text = unicodedata.normalize("NFKC", remove_invisible(domain))
    text = _trim_root(text.replace(_IDEOGRAPHIC_FULL_STOP, "."))
    if text.startswith("[") and text.endswith("]"):
        # Inside the brackets as outside: no trailing dots, so "[.]" is no domain at all (found
        # by bench/fuzz.py: it gave "." which, written back as an address, was not one).
        return _nfkc_casefold(_trim_root(text[1:-1]))
    labels = text.split(".")
    # Only the rightmost labels can be part of a real domain; decoding a million "xn--" labels
    # would cost seconds.
    first_decoded = len(labels) - _MAX_LABELS
    return ".".join(
        _nfkc_casefold(_decode_label(label) if i >= first_decoded else label)
        for i, label in enumerate(labels)
    )


# Domains repeat far more than addresses (every new sender at gmail.com or at one university),
# and a Unicode or punycode one costs ~20-40 us to normalise: memoised, bounded in entries and
# in the length of what is kept (a DNS name has at most 253 octets; junk longer is not kept).
_normalize_domain_memo = functools.lru_cache(maxsize=8192)(_normalize_domain)
_MAX_CACHED_DOMAIN = 255


def _trim_root(text: str) -> str:
    """``text`` without surrounding whitespace and without the trailing dots (the root), in any
    mix: "u..\r." is "u" (bench/fuzz.py found "u.." left, which was not stable). Linear."""
    end = len(text)
    while end and (text[end - 1] == "." or text[end - 1].isspace()):
        end -= 1
    return text[:end].strip()


def domain_suffixes(domain: str) -> tuple[str, ...]:
    """The domain and each parent domain, longest first, for "this domain or below" rules.

    ``"a.b.example"`` gives ``("a.b.example", "b.example", "example")``. The input is taken as
    given (pass it through ``normalize_domain`` and/or ``fold`` first); empty suffixes, as from
    a stray leading or trailing dot, are left out. Parents longer than 2,048 characters are left
    out too: no domain rule can be that long (DNS names stop at 253 octets), and a header full
    of ``a.a.a.…`` must not cost time quadratic in its length. The domain itself is always
    first, whatever its length.
    """
    if not domain:
        return ()
    parents: list[str] = []
    dot = domain.find(".")
    while dot >= 0:
        end = len(domain) - dot - 1
        if end <= _MAX_SUFFIX_LENGTH:
            parents.append(domain[dot + 1 :])
        dot = domain.find(".", dot + 1)
    return (domain, *(p for p in parents if p))


def strip_comments(text: str) -> str:
    """Remove RFC 5322 comments, nested or not, but not parentheses inside a quoted string.

    An unclosed comment runs to the end of the text, as a parser reading it would take it.
    """
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
            if not depth:
                out.append(ch)
        elif ch == "\\" and (quoted or depth):
            escaped = True
            if not depth:
                out.append(ch)  # kept for _unquote_local to resolve
        elif quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth:
            pass
        else:
            quoted = ch == '"'
            out.append(ch)
    return "".join(out)


def _unquoted(text: str, char: str) -> list[int]:
    """Indexes of ``char`` outside quoted strings (a backslash escapes inside quotes)."""
    found: list[int] = []
    quoted = False
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == char and not quoted:
            found.append(i)
    return found


def _strip_angle_brackets(text: str) -> str:
    """``<addr>`` -> ``addr``; also ``Name <addr>`` when a header parser left the phrase on."""
    if text.endswith(">"):
        opening = _unquoted(text, "<")
        if opening:
            text = text[opening[0] + 1 : -1]
    return text.lstrip("<").rstrip(">")


def _unquote_local(local: str) -> str:
    """``"john\\"doe"`` -> ``john"doe``: quoting does not change which mailbox is meant."""
    out: list[str] = []
    quoted = False
    escaped = False
    for ch in local:
        if escaped:
            escaped = False
            out.append(ch)
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        else:
            out.append(ch)
    return "".join(out)


def normalize_address(address: str) -> NormalizedAddress | None:
    """The mailbox an addr-spec delivers to, so that every spelling of it compares equal.

    Accepts an addr-spec as extracted from a header or envelope, with junk left on it: angle
    brackets, comments, whitespace, quoting. ``None`` when it is not an address (no ``@``, or
    an empty local part or domain after normalisation). The local part is unquoted,
    NFKC-casefolded and loses its ``+tag`` (unless nothing would remain); for gmail.com and
    googlemail.com its dots go too and the domain becomes gmail.com. Never raises.
    """
    parts = address_parts(address)
    return None if parts is None else NormalizedAddress(local=parts[0], domain=parts[1])


def address_parts(address: str) -> tuple[str, str] | None:
    """``(local, domain)`` of ``normalize_address(address)``, or None as it: the same
    normalisation without building the dataclass (core/forms.py's first sightings)."""
    simple = _SIMPLE_ADDRESS.fullmatch(address)
    if simple is not None and "xn--" not in address.lower():
        # Plain ASCII with no quoting, comments or brackets (nearly every real address): each
        # step below reduces to lower-casing, so skip the general parsing (a 4x speed-up, and
        # tests/unit/test_identity.py checks that both ways agree).
        local = simple.group(1).lower()
        domain = simple.group(2).lower().rstrip(".")
    else:
        text = remove_invisible(address).strip()
        if _SYNTAX.search(text) is None:
            # No quoting, comments, brackets or escapes (a Unicode address as people write
            # it): the parsers below would each give the text back, at a Python loop's cost a
            # character.
            at = text.rfind("@")
            if at < 0:
                return None
            local = _nfkc_casefold(text[:at].strip())
        else:
            text = strip_comments(_strip_angle_brackets(text)).strip()
            # The last "@" outside quotes; with none (junk such as a whole address in quotes),
            # the last one anywhere.
            ats = _unquoted(text, "@")
            at = ats[-1] if ats else text.rfind("@")
            if at < 0:
                return None
            local = _nfkc_casefold(_unquote_local(text[:at].strip()).strip())
        domain = normalize_domain(text[at + 1 :].strip().strip('"'))
    local = local.split("+", 1)[0] or local
    if domain in _GMAIL_DOMAINS:
        local = local.replace(".", "") or local
        domain = _GMAIL
    if not local or not domain:
        return None
    return local, domain


def normalize_jid(jid: str) -> NormalizedAddress | None:
    """The bare JID (RFC 7622) an XMPP address belongs to, resource dropped.

    The resource starts at the first ``/``; the local part ends at the first ``@`` before it.
    The local part is NFKC-casefolded only: ``+tags`` and Gmail's dots are mail conventions
    that XMPP servers do not apply. A domain-only JID (a server or component) gives
    ``local=""``. ``None`` for an empty domain or an ``@`` with nothing before it. Never raises.
    """
    parts = jid_parts(jid)
    return None if parts is None else NormalizedAddress(local=parts[0], domain=parts[1])


def jid_parts(jid: str) -> tuple[str, str] | None:
    """``(local, domain)`` of ``normalize_jid(jid)``, or None as it, without the dataclass."""
    bare = remove_invisible(jid).strip().split("/", 1)[0]
    local, at, domain_part = bare.partition("@")
    if not at:
        local, domain_part = "", bare
    local = _nfkc_casefold(local.strip())
    domain = normalize_domain(domain_part)
    if not domain or (at and not local):
        return None
    return local, domain


def normalize_display_name(name: str) -> str:
    """The display name as a reader perceives it, so spacing, quoting and case tricks are equal.

    Invisible characters are removed, then NFKC and casefold; whitespace runs become one space;
    surrounding quotes (ASCII and typographic) and whitespace are stripped. Not folded: apply
    ``fold`` to compare confusable-insensitively. Never raises.
    """
    if name.isascii():
        # Most names (a tenth of a first sighting's cost): NFKC and casefold are lower() on
        # ASCII, and no default-ignorable code point is ASCII.
        text = name.lower()
    else:
        text = _nfkc_casefold(remove_invisible(name))
    return " ".join(text.split()).strip(_NAME_QUOTES + " ")
