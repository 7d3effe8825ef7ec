"""Our SMTP client against smtplib: the same pre-built message, the same sink, the same connections.

The send loop's client is our own (`newsletter.delivery.transports.wire`): strict
reply accounting and deadlines must not cost throughput. This pushes one message
COUNT times over N persistent connections to Postfix's smtp-sink, in alternating
rounds of smtplib (as `bound.py` drives it) and our `SMTPTransport`, so that the
machine's noise falls on both alike, and prints the medians and their ratio.

Run: .venv/bin/python benchmarks/client.py [--count 4000] [--connections 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bound import push

from newsletter.delivery.transports.smtp import SMTPTransport
from newsletter.inputs.settings import SMTPSettings
from newsletter.message.builder import Envelope, Outgoing

SENDER = "bench@example.org"


def ours(host: str, port: int, connections: int, count: int, data: bytes) -> dict[str, float]:
    """The same work as `bound.push`, through our transport (pipelined MAIL/RCPT/DATA, strict replies)."""
    tickets = itertools.count()
    sent = [0]
    lock = threading.Lock()
    settings = SMTPSettings(host=host, port=port, security="none", timeout=60)

    def worker() -> None:
        transport = SMTPTransport(settings)
        transport.open()
        done = 0
        try:
            while (index := next(tickets)) < count:
                domain = "example.org" if index % 2 else "example.com"
                transport.send(Outgoing(Envelope(SENDER, f"reader{index:07d}@{domain}"), data, "<bench@x>"))
                done += 1
        finally:
            transport.close()
            with lock:
                sent[0] += done

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"sent": sent[0], "elapsed": time.perf_counter() - started}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sink(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    process = subprocess.Popen(
        [binary, "-u", "nobody", f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start (apt-get install postfix)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=17000, help="message size in bytes (the example's is ~17 KB)")
    args = parser.parse_args()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    body = line * (args.size // len(line) + 1)
    data = b"From: bench@example.org\r\nTo: reader@example.org\r\nSubject: bench\r\n\r\n" + body[: args.size]
    port = _free_port()
    sink = _sink(port)
    rates: dict[str, list[float]] = {"smtplib": [], "ours": []}
    runners: dict[str, Callable[..., dict[str, float]]] = {"smtplib": push, "ours": ours}
    try:
        for round_ in range(args.rounds):
            order = ("smtplib", "ours") if round_ % 2 == 0 else ("ours", "smtplib")
            for name in order:
                result = runners[name]("127.0.0.1", port, args.connections, args.count, data)
                rate = result["sent"] / result["elapsed"]
                rates[name].append(rate)
                print(f"round {round_ + 1}/{args.rounds}  {name:8} {int(result['sent']):6} sent  {rate:8.0f}/s")
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    ratios = [o / s for o, s in zip(rates["ours"], rates["smtplib"], strict=True)]
    print(
        f"median: smtplib {statistics.median(rates['smtplib']):.0f}/s, ours {statistics.median(rates['ours']):.0f}/s; "
        f"ours/smtplib per round (median) {statistics.median(ratios):.2f} "
        f"({args.count} messages of {len(data):,} bytes, {args.connections} connections, {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
