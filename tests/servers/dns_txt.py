"""A DNS server on a loopback UDP port that answers TXT queries from a dict (DKIM key records),
for tests of the real daemon's key lookups. Records can be removed while it runs (a key
"rotates"); a name not in the dict gets NXDOMAIN. A name whose value is ``SERVFAIL`` is
answered with that rcode, ``NODATA`` with NOERROR and no record, ``SILENT`` not at all (a dead
or firewalled server). Stopped by ``close``."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

SERVFAIL, NODATA, SILENT = "servfail", "nodata", "silent"


class TxtServer:
    def __init__(self, records: dict[str, bytes | str]) -> None:
        self.records = records
        self.asked: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-txt", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # not DNS: ignored, as a server would
                continue
            reply = self._answer(query)
            if reply is not None:
                self._sock.sendto(reply.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.asked.append(name)
        record = self.records.get(name)
        if record == SILENT:
            return None
        if record == SERVFAIL:
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        if record == NODATA:
            return reply
        if not isinstance(record, bytes) or question.rdtype != dns.rdatatype.TXT:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        chunks = [record[i : i + 255] for i in range(0, len(record), 255)]
        rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
        reply.answer.append(dns.rrset.from_rdata(question.name, 60, rdata))
        return reply

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> TxtServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
