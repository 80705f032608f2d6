"""The crash campaign's milter channel: the sending server of ``smtp_bq`` submits to a real,
private Postfix whose smtpd asks the daemon (``smtpd_milters``, mode ``milter``,
``milter_default_action = tempfail``) at the end of each message; Postfix queues and delivers
what the milter lets through, with the protected recipients removed and the quarantine mailbox
added.

The milter archives the message as Postfix holds it, without Postfix's Received field, so every
attempt of the sender carries the same bytes, and the vault archives them once per envelope
(``dedupe_scope`` ``milter:SENDER>RECIPIENTS``): a retry after a kill is matched to the archive
of the cut attempt and acted on. Postfix queues nothing before the milter's answer, so no copy
can come from a cut attempt either. Hence no known limit here, and stricter checks than
``smtp_bq``'s: an offender's message archived exactly once over all attempts, byte-exact, with
one action entry; every copy delivered by the attempt answered 250, once; none by any other.
"""

from __future__ import annotations

from contextlib import ExitStack

from tests.chaos.campaign import OFFENDERS, Checks, Message
from tests.chaos.smtp import BOB, JANE, QUARANTINE, RETRY, TENANT
from tests.chaos.smtp_bq import SmtpBqChannel
from tests.servers.ports import free_ports
from tests.servers.postfix import start_postfix

# Postfix's words when the milter is down or dropped the connection (milter_default_action).
CUT = ("Service unavailable",)


class SmtpMilterChannel(SmtpBqChannel):
    name = "smtp_milter"
    points = frozenset({"milter.replied"})
    cut_words = CUT

    def start(self, stack: ExitStack) -> None:
        (self.milter_port,) = free_ports(1)
        self.postfix = start_postfix(
            "milter",
            [JANE, QUARANTINE, BOB],
            milter=f"inet:127.0.0.1:{self.milter_port}",
            main_cf=RETRY + "notify_classes =\n",
        )
        self._start_rest(stack)

    def sources(self) -> str:
        return (
            "  smtp_filter:\n"
            f"    listen: 127.0.0.1:{self.milter_port}\n"
            "    mode: milter\n"
            f"    tenants_dir: {self.root}/tenants.d\n"
            "    timeout_seconds: 30\n"
        )

    def _blobs(self, checks: Checks) -> dict[int, list[tuple[str, Message]]]:
        """Each message's archived entries (the bytes as sent: no attempt named in them)."""
        found: dict[int, list[tuple[str, Message]]] = {}
        for m in self.messages:
            for _ in checks.archived(m, TENANT):
                found.setdefault(m.number, []).append(("", m))
        return found

    def _check_one(
        self,
        checks: Checks,
        m: Message,
        archived: list[tuple[str, Message]],
        boxes: dict[str, dict[int, list[str]]],
    ) -> None:
        job = self.jobs[m.number]
        finals = [a for a in job.attempts if a.final]
        if len(finals) != 1 or finals[0] is not job.attempts[-1]:
            tried = [(a.tag, a.code, a.text[:80]) for a in job.attempts[-3:]]
            checks.violate(f"{self.name}: item {m.number} never answered 250 or 5xx once: {tried}")
            return
        final = finals[0]
        action = checks.action(m.person)
        late = action is not None and m.person not in OFFENDERS
        judged = None if action is None or (late and not archived) else action
        to_bob = BOB in self.recipients[m.number]
        refused = judged == "block" and not to_bob
        if final.code != (550 if refused else 250):
            checks.violate(
                f"{self.name}: item {m.number} ({m.person}, {judged or 'clean'}) answered "
                f"{final.code} {final.text[:80]!r}"
            )
        if judged is None:
            checks.clean(self.name, m, TENANT)
        else:
            checks.offender(self.name, m, TENANT)
        want = {
            JANE: int(judged is None),
            QUARANTINE: int(judged == "quarantine"),
            BOB: int(to_bob),
        }
        for box, count in want.items():
            got = boxes[box].get(m.number, [])
            if got != [final.tag] * count:
                checks.violate(
                    f"{self.name}: item {m.number} ({m.person}, {judged or 'clean'}) is in "
                    f"{box} by attempts {got}, not {count}x by {final.tag} (answered "
                    f"{final.code})"
                )
