"""Large mail providers: domains that millions of unrelated people send through.

A signal that two messages share such a domain (their DKIM ``d=``, their Message-ID's right-hand
side, the provider's own outgoing servers in ``Received``) says nothing about who wrote them, so
the alias linker (core/aliases.py) ignores it. The list is deliberately short and only holds
providers where sharing is certain: free-mail services, and the bulk-mail platforms that sign
and relay for many unrelated senders. A domain left off costs at worst a false link, which only
holds a message for review; it never blocks one.

``is_large_provider`` also accepts sub-domains (``mail.gmail.com``, ``eu.mailgun.org``).
"""

from __future__ import annotations

from guardmail.core.identity import domain_suffixes

FREE_MAIL = frozenset(
    {
        # Google, Microsoft, Yahoo/AOL, Apple
        "gmail.com",
        "googlemail.com",
        "google.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "live.com",
        "msn.com",
        "outlook.de",
        "outlook.fr",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.co.jp",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "aim.com",
        "yahoodns.net",
        "icloud.com",
        "me.com",
        "mac.com",
        # Europe
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "gmx.at",
        "web.de",
        "t-online.de",
        "freenet.de",
        "mail.ru",
        "bk.ru",
        "inbox.ru",
        "list.ru",
        "yandex.ru",
        "yandex.com",
        "ya.ru",
        "rambler.ru",
        "orange.fr",
        "wanadoo.fr",
        "free.fr",
        "sfr.fr",
        "laposte.net",
        "libero.it",
        "virgilio.it",
        "tiscali.it",
        "seznam.cz",
        "wp.pl",
        "o2.pl",
        "interia.pl",
        "onet.pl",
        "btinternet.com",
        "sky.com",
        "ziggo.nl",
        "bluewin.ch",
        # Privacy-oriented and other global services
        "proton.me",
        "protonmail.com",
        "protonmail.ch",
        "pm.me",
        "tutanota.com",
        "tutanota.de",
        "tuta.io",
        "tutamail.com",
        "mailbox.org",
        "posteo.de",
        "fastmail.com",
        "fastmail.fm",
        "messagingengine.com",
        "zoho.com",
        "zohomail.com",
        "mail.com",
        "email.com",
        "hushmail.com",
        "disroot.org",
        "riseup.net",
        "cock.li",
        "guerrillamail.com",
        "sharklasers.com",
        "mailinator.com",
        "10minutemail.com",
        "temp-mail.org",
        "yopmail.com",
        # Asia, Americas
        "qq.com",
        "foxmail.com",
        "163.com",
        "126.com",
        "yeah.net",
        "sina.com",
        "sohu.com",
        "naver.com",
        "daum.net",
        "hanmail.net",
        "rediffmail.com",
        "uol.com.br",
        "bol.com.br",
        "terra.com.br",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "cox.net",
        "charter.net",
        "shaw.ca",
        "rogers.com",
        "bigpond.com",
    }
)

# Platforms that sign, relay or number messages for many unrelated senders.
BULK_MAIL = frozenset(
    {
        "amazonses.com",
        "sendgrid.net",
        "sendgrid.info",
        "mailgun.org",
        "mailgun.net",
        "mcsv.net",
        "mailchimp.com",
        "mandrillapp.com",
        "sparkpostmail.com",
        "mailjet.com",
        "sendinblue.com",
        "brevo.com",
        "postmarkapp.com",
        "mtasv.net",
        "constantcontact.com",
        "exacttarget.com",
        "salesforce.com",
        "hubspot.com",
        "hubspotemail.net",
        "zendesk.com",
        "freshdesk.com",
        "onmicrosoft.com",
        "protection.outlook.com",
        "googlegroups.com",
        "groups.io",
        "mailman.org",
        "facebookmail.com",
        "linkedin.com",
        "twitter.com",
        "x.com",
        "github.com",
        "amazon.com",
        "paypal.com",
    }
)

LARGE_PROVIDERS = FREE_MAIL | BULK_MAIL

# Message-ID right-hand sides that name no one: unconfigured hosts and client defaults.
ANONYMOUS_HOSTS = frozenset(
    {"localhost", "localhost.localdomain", "localdomain", "local", "mail", "example.com"}
)


def is_large_provider(domain: str) -> bool:
    """Whether ``domain`` (normalised: lower case, no trailing dot) is one of the large
    providers, or below one."""
    return any(s in LARGE_PROVIDERS for s in domain_suffixes(domain))


def is_free_mail(domain: str) -> bool:
    """Whether addresses at ``domain`` belong to people who share nothing but the provider."""
    return any(s in FREE_MAIL for s in domain_suffixes(domain))
