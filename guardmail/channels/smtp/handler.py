"""The content filter's aiosmtpd handler: what EHLO offers, where DATA goes, what an error answers.

Contracts:
- EHLO offers PIPELINING, ENHANCEDSTATUSCODES, DSN and XFORWARD (``OFFERS``) beside aiosmtpd's
  own extensions, before its last line.
- DATA is answered by ``handle`` (``SmtpFilterSource.handle`` in the daemon), whose reply is
  passed on as it is.
- An exception aiosmtpd reports here is logged and answered ``451 4.3.0`` (Postfix keeps the
  mail queued and retries), never a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import Session

from guardmail.channels.smtp.wire import FilterEnvelope

# aiosmtpd reads commands strictly in order, so pipelined ones work; it just does not say so.
OFFERS = (
    "250-PIPELINING",
    "250-ENHANCEDSTATUSCODES",  # every reply carries one (wire.enhanced)
    "250-DSN",  # kept and passed on to the next hop (wire.FilterSMTP.smtp_MAIL, smtp_RCPT)
    "250-XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE",
)


class FilterHandler:
    """aiosmtpd hooks: offer PIPELINING and XFORWARD, hand DATA on, never answer 5xx by error."""

    def __init__(self, handle: Callable[[FilterEnvelope], Awaitable[str]]) -> None:
        self.handle = handle

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], *OFFERS, responses[-1]]

    async def handle_DATA(self, server: Any, session: Session, envelope: Any) -> str:
        assert isinstance(envelope, FilterEnvelope)
        return await self.handle(envelope)

    async def handle_exception(self, error: Exception) -> str:
        logging.getLogger("guardmail").error(
            "smtp_filter.error", exc_info=error, extra={"gm_fields": {}}
        )
        return "451 4.3.0 Internal error in the content filter, try again later"
