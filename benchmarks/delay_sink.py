"""A loopback SMTP sink that waits before every reply: a relay N ms away, without a network.

Target 2 of the performance issue is about latency, not bandwidth: a relay 20 ms
away costs 20 ms on every reply, so one connection tops out near 12 messages/s
and only parallel connections help. Postfix's smtp-sink can only delay whole
seconds, and aiosmtpd spends more CPU per reply than the clients we measure
(they share two cores), so this is a minimal asyncio server: it speaks just
enough SMTP for smtplib (no PIPELINING, so every command waits for its reply),
discards the data, and counts what it accepted.

Run: python delay_sink.py --port 2526 --delay-ms 20
On SIGTERM/SIGINT it prints one JSON line {"messages": N, "sessions": N} and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

EHLO_LINES = ("delay-sink", "8BITMIME", "SMTPUTF8", "SIZE 52428800")
MAX_LINE = 64 * 1024 * 1024  # the whole message is read as one "line" ending in CRLF.CRLF


class Sink:
    """Counts accepted messages and sessions across all connections."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.messages = 0
        self.sessions = 0

    async def reply(self, writer: asyncio.StreamWriter, text: str) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        writer.write(text.encode("ascii") + b"\r\n")
        await writer.drain()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        try:
            await self.reply(writer, "220 delay-sink ESMTP")
            while True:
                line = await reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    last = len(EHLO_LINES) - 1
                    lines = [f"250{' ' if i == last else '-'}{t}" for i, t in enumerate(EHLO_LINES)]
                    await self.reply(writer, "\r\n".join(lines))
                elif verb == b"HELO":
                    await self.reply(writer, "250 delay-sink")
                elif verb == b"DATA":
                    await self.reply(writer, "354 end data with <CR><LF>.<CR><LF>")
                    await reader.readuntil(b"\r\n.\r\n")
                    self.messages += 1
                    await self.reply(writer, "250 2.0.0 queued")
                elif verb == b"QUIT":
                    await self.reply(writer, "221 2.0.0 bye")
                    return
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    await self.reply(writer, "250 2.0.0 ok")
                else:
                    await self.reply(writer, "502 5.5.2 not implemented")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()


async def serve(host: str, port: int, delay: float) -> Sink:
    sink = Sink(delay)
    server = await asyncio.start_server(sink.session, host, port, limit=MAX_LINE, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {host}:{port}", flush=True)
    async with server:
        await stop.wait()
    return sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="wait before every reply (default 20)")
    args = parser.parse_args(argv)
    sink = asyncio.run(serve(args.host, args.port, args.delay_ms / 1000.0))
    print(json.dumps({"messages": sink.messages, "sessions": sink.sessions}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
