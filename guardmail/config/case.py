"""The ``case:`` section: who is protected and the reference numbers others gave the case.

Used on the first page of an evidence report, so that an officer sees at once whose case it is
and which police report, court order or provider ticket it belongs to. Nothing here is secret
and nothing is sent anywhere; it goes only into the bundles the person makes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    label: Text
    """What the number is, e.g. "Police report (Springfield PD)", "Court order"."""
    value: Text
    """The number or text itself, e.g. "2026-1234"."""


class CaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: Text | None = None
    """The protected person's name as it should appear on reports (default: the tenant)."""
    references: list[Reference] = []
    """Reference numbers: police report, court order, provider ticket."""
    contacts: list[Text] = []
    """People and organisations helping, e.g. "Officer Diaz, Springfield PD, 555-0100"."""

    def lines(self, tenant: str) -> tuple[tuple[str, str], ...]:
        """(label, value) lines for a report's first page, the person first."""
        out = [("Protected person", self.name or tenant)]
        out += [(r.label, r.value) for r in self.references]
        out += [("Contact", c) for c in self.contacts]
        return tuple(out)
