"""The unsubscribe server against a long `unsubscribed.csv`: cost per one-click POST, and a burst.

    python benchmarks/unsubscribe_server.py                  # 320,000 rows, a burst of 500
    python benchmarks/unsubscribe_server.py --rows 1000000 --burst 1000

In one run, on 127.0.0.1 only:

- "re-read per POST": what the server did before it kept an index, one POST's work
  without the HTTP part: read the whole file under the lock, then append one row
  (`add_unsubscribed`, which makes a fresh `UnsubscribedFile` each call and so reads
  the file every time); the median of a few;
- "server, one POST at a time": the real server, over real sockets, sequential
  POSTs for new addresses (each one appends a row and fsyncs); the median;
- "server, burst": `--burst` clients, one thread and one socket each, released
  together; requests/s over the whole burst, and how many were not answered 200;
- the one read of the file when the server starts.

The file is generated in a temporary folder and removed afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.security.one_click: the same server and POST the tests use

from newsletter.delivery.suppression import add_unsubscribed, read_unsubscribed  # noqa: E402
from newsletter.web.unsubscribe import UnsubscribeApp, make_unsubscribe_server  # noqa: E402
from tests.security.one_click import header_link, post_one_click, signed_links  # noqa: E402


def write_file(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        stream.write("email,added,source\r\n")
        stream.writelines(f'"listed.reader{i}@example.org","2024-01-01T00:00:00Z","one-click"\r\n' for i in range(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=320_000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--rereads", type=int, default=3, help="POSTs timed the old way (each reads the file)")
    parser.add_argument("--posts", type=int, default=50, help="sequential POSTs timed on the server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "unsubscribed.csv"
        write_file(path, args.rows)
        size = path.stat().st_size
        print(f"unsubscribed.csv: {args.rows:,} rows, {size / 1e6:.1f} MB")

        started = time.perf_counter()
        assert len(read_unsubscribed(path)) == args.rows
        print(f"one read of the whole file:          {time.perf_counter() - started:8.3f} s")

        rereads = []
        for i in range(args.rereads):
            started = time.perf_counter()
            assert add_unsubscribed(path, [f"reread{i}@example.org"], source="one-click")
            rereads.append(time.perf_counter() - started)
        old = statistics.median(rereads)
        print(f"re-read per POST (previous server):  {old * 1000:8.1f} ms per POST  ({1 / old:7.1f} POSTs/s at most)")

        started = time.perf_counter()
        app = UnsubscribeApp(signed_links(), path)  # reads the file once
        loaded = time.perf_counter() - started
        server = make_unsubscribe_server(app, port=0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_port
        try:
            print(f"server start (reads the file once):  {loaded:8.3f} s")
            singles = []
            for i in range(args.posts):
                link = header_link(f"single{i}@example.org")
                started = time.perf_counter()
                assert post_one_click(port, link) == 200
                singles.append(time.perf_counter() - started)
            new = statistics.median(singles)
            print(
                f"server, one POST at a time:          {new * 1000:8.1f} ms per POST  "
                f"({old / new:.0f}x less than re-reading)"
            )

            links = [header_link(f"burst{i}@example.org") for i in range(args.burst)]
            outcomes: list[int | str] = ["not run"] * len(links)
            gate = threading.Barrier(len(links) + 1)

            def one(index: int) -> None:
                gate.wait()
                try:
                    outcomes[index] = post_one_click(port, links[index], timeout=120)
                except Exception as exc:  # counted below
                    outcomes[index] = type(exc).__name__

            clients = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(links))]
            for client in clients:
                client.start()
            gate.wait()
            started = time.perf_counter()
            for client in clients:
                client.join()
            elapsed = time.perf_counter() - started
            failed = sum(1 for outcome in outcomes if outcome != 200)
            print(
                f"server, burst of {args.burst} concurrent POSTs:  {args.burst / elapsed:8.0f} requests/s "
                f"({elapsed:.2f} s), {failed} not answered 200"
            )
        finally:
            server.shutdown()
            server.server_close()
        expected = args.rows + args.rereads + args.posts + args.burst
        recorded = len(read_unsubscribed(path))
        print(f"addresses in the file afterwards:    {recorded:,} (expected {expected:,})")


if __name__ == "__main__":
    main()
