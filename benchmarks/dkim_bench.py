"""DKIM signing's cost: messages built per second, signed and unsigned, in one run.

    .venv/bin/python benchmarks/dkim_bench.py                  # 2,000 recipients, 5 repeats
    .venv/bin/python benchmarks/dkim_bench.py --recipients 500 --repeat 3
    .venv/bin/python benchmarks/dkim_bench.py --send --recipients 5000   # whole sends to smtp-sink

The repository's example campaign as `newsletter init` writes it, to generated
recipients with Russian names in Cyrillic (as target 5 of run.py), with personal
unsubscribe links and List-Unsubscribe headers. Each variant loads the campaign
afresh and times (in CPU seconds of this process) what a rendering process does for every recipient: render, inline,
build the message bytes and, when a key is set, sign them. That is the whole of the
work signing adds to a send (the sending process only passes the bytes on, ~0.6 KB
longer), so the rate here bounds what signing can take off a send's rate.

Targets (issue 17): rsa-2048 at least 70% of the unsigned rate, ed25519 at least 90%.
Variants run in a rotating order within each repeat; each ratio is the median of the
ratios paired within one repeat, so load on a shared machine cancels. The last row,
dkimpy's own `dkim.sign` over the unsigned bytes (pure-Python RSA, the key parsed for
every message), is what the tool would cost without signing the hash itself; it is
shown for comparison and not a target. One message of each signed variant is
checked with dkimpy's `verify` first.

With --send, each variant is instead a whole `newsletter send --connections 4` to
Postfix's smtp-sink on loopback (as target 5 of run.py, with its helpers), timed from
start to exit and counted by the sink: the rate a user sees, where rendering and
signing run in the rendering processes beside the sending one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dkim
import run
from workload import init_campaign, write_russian_recipients

from newsletter.inputs.recipients import RecipientList
from newsletter.message.dkim import generate_key
from newsletter.project import Project, load_project

SETTINGS = {
    "NEWSLETTER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe?email={email}&token={token}",
    "NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe@example.org",
    "NEWSLETTER_SECRET": "benchmark-secret-not-for-real-use",
}
TARGETS = {"rsa-2048": 0.70, "ed25519": 0.90}


def built_per_second(project: Project, finish: Callable[[bytes], object] | None = None) -> float:
    """Every recipient rendered and built (and signed, if the project signs); messages per CPU second.

    CPU time of this process, not wall time: on a machine shared with other work the
    wall clock measures the neighbours as much as the code.
    """
    started = time.process_time()
    count = 0
    for recipient in project.recipients.recipients():
        _, outgoing = project.message(recipient)
        if finish is not None:
            finish(outgoing.data)
        count += 1
    return count / (time.process_time() - started)


def sent_per_second(
    campaign: Path, csv_path: Path, settings: dict[str, str], smtp_sink: str, work: Path, args: argparse.Namespace
) -> float:
    """One whole `newsletter send` over a fresh journal; messages the sink accepted per second of wall time."""
    shutil.rmtree(campaign / ".newsletter", ignore_errors=True)
    command = [run.PYTHON, "-m", "newsletter", "--campaign", str(campaign), "--recipients", str(csv_path)]
    command += ["send", "--yes", "--connections", str(args.connections)]
    with run.Sink("smtp-sink", workdir=work, smtp_sink=smtp_sink) as sink:
        env = run.our_env(sink.port) | {k: v for k, v in settings.items() if k.startswith("NEWSLETTER_DKIM")}
        done = run.run_measured(
            command, env=env, stdout=work / "send.out", stderr=work / "send.err", timeout=600
        )
        sink.stop()
    if done.returncode != 0 or sink.accepted != args.recipients:
        raise SystemExit(f"send failed (exit {done.returncode}, {sink.accepted} accepted): {work / 'send.err'}")
    return args.recipients / done.wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--send", action="store_true", help="whole sends to smtp-sink instead of build rates")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dkim-bench-") as temp:
        work = Path(temp)
        campaign = init_campaign(work / "campaign")
        csv_path = write_russian_recipients(work / "recipients.csv", args.recipients)
        keys = {}
        records = {}
        for name, ed in (("rsa", False), ("ed25519", True)):
            key, pem = generate_key(selector=f"bench-{name}", domain="example.org", ed25519=ed)
            (work / f"{name}.pem").write_bytes(pem)
            keys[name] = pem
            records[f"{key.record_name}.".encode()] = key.dns_record().encode()

        def settings(*names: str) -> dict[str, str]:
            if not names:
                return SETTINGS
            return SETTINGS | {
                "NEWSLETTER_DKIM_KEY": ",".join(str(work / f"{n}.pem") for n in names),
                "NEWSLETTER_DKIM_SELECTOR": ",".join(f"bench-{n}" for n in names),
            }

        def load(*names: str) -> Project:
            return load_project(campaign, environ=settings(*names))

        def with_recipients(project: Project) -> Project:
            return replace(project, recipients=RecipientList(csv_path))

        variants: dict[str, tuple[tuple[str, ...], Callable[[bytes], object] | None]] = {
            "unsigned": ((), None),
            "rsa-2048": (("rsa",), None),
            "ed25519": (("ed25519",), None),
            "dual": (("rsa", "ed25519"), None),
            "dkimpy dkim.sign rsa": (
                (),
                lambda data: dkim.sign(
                    data, b"bench-rsa", b"example.org", keys["rsa"], canonicalize=(b"relaxed", b"relaxed")
                ),
            ),
        }

        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            return records.get(name)

        for name in ("rsa-2048", "ed25519", "dual"):
            project = with_recipients(load(*variants[name][0]))
            _, outgoing = project.message(next(iter(project.recipients.recipients())))
            message = dkim.DKIM(outgoing.data)
            count = outgoing.data.split(b"\r\n\r\n", 1)[0].count(b"DKIM-Signature:")
            if not all(message.verify(idx=i, dnsfunc=lookup) for i in range(count)):
                print(f"{name}: the signature does not verify", file=sys.stderr)
                return 1

        if args.send:
            del variants["dkimpy dkim.sign rsa"]
            smtp_sink = run.ensure_postfix_tool("smtp-sink")
        rates: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for repeat in range(args.repeat):
            shifted = order[repeat % len(order) :] + order[: repeat % len(order)]
            for name in shifted:
                names, finish = variants[name]
                if args.send:
                    rate = sent_per_second(campaign, csv_path, settings(*names), smtp_sink, work, args)
                else:
                    rate = built_per_second(with_recipients(load(*names)), finish)
                rates[name].append(rate)
            print(f"repeat {repeat + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in order), flush=True)

    what = f"newsletter send, {args.connections} connections, to smtp-sink" if args.send else "render + build + sign"
    print(f"\nexample campaign, {args.recipients} recipients, median of {args.repeat} repeats ({what})")
    print(f"{'variant':<22} {'msgs/s':>8} {'of unsigned':>12} {'target':>8}")
    for name in order:
        paired = [signed / plain for signed, plain in zip(rates[name], rates["unsigned"], strict=True)]
        share = statistics.median(paired)
        target = TARGETS.get(name)
        verdict = "" if target is None else f">={target:.0%} " + ("met" if share >= target else "MISSED")
        print(f"{name:<22} {statistics.median(rates[name]):>8.0f} {share:>11.0%} {verdict:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
