"""Rendering cost per message, from scratch vs the skeleton fast path, and reading memory.

    python benchmarks/render_bench.py                 # both parts
    python benchmarks/render_bench.py --no-rss        # only the per-message costs
    python benchmarks/render_bench.py --rows 10000,1000000

Per message: subject, HTML and text of one recipient, CSS inlined, for the example
campaign and for the benchmark workload's ~10 KB newsletter with ~50 rules
(`workload.make_campaign`). "From scratch" is the same renderer with the skeleton
switched off, so premailer runs for every recipient; "fast path" starts from a fresh
renderer each run, so building the skeletons is part of its cost. Each figure is the
median of several runs over the same recipients.

Memory: peak RSS of a fresh process that only iterates a generated CSV through
`RecipientList` (VmHWM on Linux, getrusage elsewhere; see `peak_rss_kib`); the CSVs
are written to a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workload import make_campaign, write_recipients

from newsletter.inputs.campaign import load_campaign
from newsletter.inputs.recipients import Recipient, RecipientList
from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import UnsubscribeLinks
from newsletter.render.renderer import Renderer

ROOT = Path(__file__).resolve().parents[1]
LINKS = UnsubscribeLinks(
    url="https://example.org/unsubscribe?e={email}&t={token}",
    secret=Secret("benchmark secret"),
    list_id="announcements.example.org",
)


def per_message(folder: Path, recipients: list[Recipient], *, fast: bool, runs: int) -> float:
    """Median seconds per message over `runs` passes through `recipients`."""
    timings = []
    for _ in range(runs):
        renderer = Renderer(load_campaign(folder), links=LINKS)
        if not fast:
            renderer.inliner.disabled = "benchmark: inline every recipient from scratch"
        started = time.perf_counter()
        for recipient in recipients:
            renderer.render(recipient)
        timings.append((time.perf_counter() - started) / len(recipients))
    return statistics.median(timings)


def render_costs(work: Path, count: int, runs: int) -> None:
    recipients = list(RecipientList(write_recipients(work / "render.csv", count)).recipients())
    campaigns = {
        "example campaign": ROOT,
        "~10 KB newsletter, ~50 rules": make_campaign(work / "newsletter"),
    }
    print(f"per message, median of {runs} runs over {count} recipients (subject + HTML + text)")
    print(f"{'campaign':<30} {'from scratch':>13} {'fast path':>11} {'ratio':>7}")
    for name, folder in campaigns.items():
        slow = per_message(folder, recipients, fast=False, runs=runs)
        quick = per_message(folder, recipients, fast=True, runs=runs)
        print(f"{name:<30} {slow * 1e3:>10.2f} ms {quick * 1e3:>8.3f} ms {slow / quick:>6.1f}x")


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB.

    Linux carries `ru_maxrss` over fork and exec, so a child started by a big parent
    reports at least the parent's peak; `VmHWM` belongs to the child's own memory.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def iterate(csv_path: Path) -> None:
    """The child's job: read every row, print the count, peak RSS and seconds."""
    started = time.perf_counter()
    count = sum(1 for _ in RecipientList(csv_path))
    print(count, peak_rss_kib(), f"{time.perf_counter() - started:.1f}")


def peak_rss(rows: int, work: Path) -> None:
    """Iterate a generated list in a child process, so each peak is its own."""
    csv_path = write_recipients(work / f"rows-{rows}.csv", rows)
    command = [sys.executable, __file__, "--iterate", str(csv_path)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    csv_path.unlink()
    count, kib, elapsed = int(output[0]), int(output[1]), output[2]
    print(f"{rows:>9} rows: {count} row events, peak RSS {kib / 1024:6.1f} MB, {elapsed} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=300, help="recipients per timing pass")
    parser.add_argument("--runs", type=int, default=5, help="timing passes; the median is shown")
    parser.add_argument("--rows", default="10000,1000000", help="CSV sizes for the memory figures")
    parser.add_argument("--no-rss", action="store_true", help="skip the memory figures")
    parser.add_argument("--no-render", action="store_true", help="skip the per-message costs")
    parser.add_argument("--iterate", type=Path, help=argparse.SUPPRESS)  # the memory child
    args = parser.parse_args(argv)
    if args.iterate:
        iterate(args.iterate)
        return 0
    with tempfile.TemporaryDirectory(prefix="render-bench-") as temp:
        work = Path(temp)
        if not args.no_render:
            render_costs(work, args.recipients, args.runs)
        if not args.no_rss:
            print("peak RSS of iterating a generated list through RecipientList (fresh process each)")
            for rows in (int(r) for r in args.rows.split(",")):
                peak_rss(rows, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
