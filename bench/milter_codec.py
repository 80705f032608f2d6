"""CPU to decode one message's milter packets: guardmail's codec, and kilter.protocol if installed.

The stream is what Postfix 3.7 sends for a ~3 KB message with 15 headers after negotiation
(MAIL, RCPT, one macro packet before each header, EOH, one body chunk, end of message). Prints
microseconds per message; asserts nothing about time. kilter.protocol is not a guardmail
dependency: ``pip install kilter-protocol`` into a scratch venv to compare
(plugins/postfix/README.md, "Why our own protocol code").

    python bench/milter_codec.py [--messages N]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guardmail.channels.smtp import milter_codec as mc  # noqa: E402

POSTFIX_OFFER = struct.pack("!LLL", 6, 0x1FF, 0x1FFFFF)


def stream() -> bytes:
    parts = [mc.packet(mc.MAIL, b"<a@b.example>\0size=3000\0"), mc.packet(mc.RCPT, b"<c@d.ex>\0")]
    for i in range(15):
        parts.append(mc.packet(mc.MACRO, b"Li\0" + b"2ED87212868\0"))
        parts.append(mc.packet(mc.HEADER, b"X-H%d\0 value %d\0" % (i, i)))
    parts += [mc.packet(mc.EOH), mc.packet(mc.BODY, b"x" * 3000), mc.packet(mc.BODYEOB)]
    return b"".join(parts)


def ours(data: bytes, count: int) -> float:
    decoder = mc.Decoder()
    options, _ = mc.negotiate(POSTFIX_OFFER)
    began = time.process_time()
    for _ in range(count):
        message = mc.Message()
        for p in decoder.feed(data):
            if p.command == mc.HEADER:
                message.header(p.data)
            elif p.command == mc.BODY:
                message.chunk(p.data)
            elif p.command == mc.BODYEOB:
                message.raw()
            options.answered(p.command)
    return time.process_time() - began


def kilter(data: bytes, count: int) -> float | None:
    try:
        from kilter.protocol import messages  # type: ignore[import-not-found]
        from kilter.protocol.buffer import SimpleBuffer  # type: ignore[import-not-found]
        from kilter.protocol.core import FilterProtocol  # type: ignore[import-not-found]
    except ImportError:
        return None
    buf: Any = SimpleBuffer(1 << 20)
    out: Any = SimpleBuffer(4096)
    proto: Any = FilterProtocol()
    buf[:] = mc.packet(mc.OPTNEG, POSTFIX_OFFER)
    for _ in proto.read_from(buf):
        flags = messages.ProtocolFlags(mc.WANTED_PROTOCOL)
        proto.write_to(out, messages.Negotiate(6, messages.ActionFlags(0x0C), flags))
    began = time.process_time()
    for _ in range(count):
        buf[:] = data
        for event in proto.read_from(buf):
            if isinstance(event, messages.Header):
                event.freeze()
            if proto.needs_response(event):
                out.filled = 0
                proto.write_to(out, messages.Continue())
    return time.process_time() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    data = stream()
    n = args.messages
    print(f"{n} messages, {len(data)} octets of milter packets each")
    print(f"guardmail milter_codec   {ours(data, n) / n * 1e6:7.1f} us CPU/message")
    took = kilter(data, n)
    if took is None:
        print("kilter.protocol          not installed")
    else:
        print(f"kilter.protocol          {took / n * 1e6:7.1f} us CPU/message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
