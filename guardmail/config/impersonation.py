"""The ``impersonation:`` section: the person's own addresses, for mail forged in their name.

Mail that claims to come from the person (or their domain) but fails the authentication checks
of the receiving server they trust, and bounces of mail forged in their name, are quarantined
as evidence of impersonation (guardmail.core.impersonation). Off until addresses or domains and
the ``authserv_id`` are given.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from guardmail.core.impersonation import OwnNames

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]


class ImpersonationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    addresses: list[Name] = []
    """The person's own addresses (mail claiming one of them is checked)."""
    domains: list[Name] = []
    """The person's own domains, if they have any (not a free-mail provider's)."""
    authserv_id: Name | None = None
    """The id the person's receiving server writes first in its Authentication-Results header
    (e.g. mx.example.org): only that server's results count, every other such header is
    ignored. Default: ``evidence.authserv_id``. Without either, forged From addresses are not
    judged (bounces still are)."""
    signing_domains: list[Name] = []
    """DKIM domains the person's provider signs their outgoing mail with (e.g. gmail.com);
    a bounce of mail in their name without such a signature is backscatter of a forgery.
    Default: the domains above and those of the addresses."""

    @model_validator(mode="after")
    def _addresses_are_addresses(self) -> Self:
        for address in self.addresses:
            if "@" not in address.strip("@"):
                raise ValueError(f"{address!r} is not an address (no @)")
        return self

    def own_names(self, trusted: str = "") -> OwnNames | None:
        """What guardmail.core.impersonation checks against (``trusted``: the authserv-id to
        use when this section names none, ``evidence.authserv_id``); None when nothing is
        configured."""
        if not self.addresses and not self.domains:
            return None
        return OwnNames.build(
            self.addresses, self.domains, self.authserv_id or trusted, self.signing_domains
        )
