"""The bound: plain smtplib pushing one pre-built message over N persistent connections.

This is the most a Python sender can do against a given relay on this machine:
no rendering, no MIME building, no journal, just MAIL/RCPT/DATA over already
open connections, one thread per connection (as our sender does). Our full
pipeline is judged as a fraction of this number, measured in the same run, so
machine noise cancels out of the ratio.

The message is the `.eml` that `newsletter preview` wrote for the campaign, so
the bound pushes exactly the bytes, and size, that our sender pushes.

Run: python bound.py --port 2525 --connections 4 --count 10000 --message FILE
Prints one JSON line: {"sent": N, "failed": N, "elapsed": seconds}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import smtplib
import sys
import threading
import time
from pathlib import Path

SENDER = "bench@example.org"


def push(host: str, port: int, connections: int, count: int, data: bytes) -> dict[str, float]:
    """Send `data` `count` times over `connections` threads; return counts and elapsed seconds."""
    tickets = itertools.count()  # next() on itertools.count is atomic under the GIL
    results = {"sent": 0, "failed": 0}
    lock = threading.Lock()

    def worker() -> None:
        sent = failed = 0
        try:
            with smtplib.SMTP(host, port, timeout=60) as smtp:
                smtp.ehlo()
                while (index := next(tickets)) < count:
                    domain = "example.org" if index % 2 else "example.com"
                    try:
                        smtp.sendmail(SENDER, [f"reader{index:07d}@{domain}"], data)
                        sent += 1
                    except smtplib.SMTPResponseException:
                        failed += 1
        except (OSError, smtplib.SMTPException) as exc:
            print(f"bound: connection failed: {exc}", file=sys.stderr)
        finally:
            with lock:
                results["sent"] += sent
                results["failed"] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"bound-{i}") for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"sent": results["sent"], "failed": results["failed"], "elapsed": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--message", type=Path, required=True, help="the .eml file to push")
    args = parser.parse_args(argv)
    data = args.message.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    print(json.dumps(push(args.host, args.port, args.connections, args.count, data)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
