"""Messages built in a child process are the messages the parent would have built, in order."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from newsletter import project as api
from newsletter.checks.preflight import preflight
from newsletter.delivery.buildpool import BuildPool, can_fork
from tests.faults import write_list


def test_child_built_messages_match_and_keep_the_list_order(campaign: Path) -> None:
    addresses = write_list(campaign, 300)
    project = api.load_project(campaign, environ={})
    with BuildPool(lambda r: project.message(r)[1]) as pool:
        pairs = list(pool.map(project.recipients.recipients()))
    assert [r.email for r, _ in pairs] == addresses
    for recipient, outgoing in pairs[::37]:
        local = project.message(recipient)[1]
        ours, theirs = (message_from_bytes(o.data, policy=policy.default) for o in (outgoing, local))
        assert ours["To"] == theirs["To"] and ours["Subject"] == theirs["Subject"]
        assert ours.get_body(("html",)).get_content() == theirs.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert len({o.message_id for _, o in pairs}) == 300  # unique across processes


def test_errors_come_back_as_values_with_their_location(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text("email,name\nann@example.org,Ann\n", encoding="utf-8")
    template = campaign / "templates" / "announcement.html"  # a column the list lacks, printed with no fallback
    template.write_text(
        template.read_text(encoding="utf-8").replace('recipient.name or "colleague"', "recipient.department"),
        encoding="utf-8",
    )
    project = api.load_project(campaign, environ={})
    report = preflight(project)
    assert len(report.template_errors) == 1
    error = report.template_errors[0]
    assert error.path is not None and error.path.name == "announcement.html" and error.line
    assert "recipients line 2" in str(error)


def test_this_machine_really_uses_a_child_process() -> None:
    """On Linux with more than one core the pool forks; elsewhere it builds in-process."""
    import os
    import sys

    alone = len(os.listdir("/proc/self/task")) == 1 if sys.platform == "linux" else True
    assert can_fork() == (sys.platform == "linux" and (os.cpu_count() or 1) > 1 and alone)
    with BuildPool(lambda r: os.getpid()) as pool:
        pids = {pid for _, pid in pool.map([object()] * 40)}  # type: ignore[list-item]
    assert (os.getpid() not in pids) == can_fork()


def test_no_fork_while_another_thread_runs() -> None:
    """A child forked beside a running thread inherits the locks it held: build in-process instead."""
    import os
    import threading

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not can_fork()
        with BuildPool(lambda r: os.getpid(), processes=2) as pool:
            pids = {pid for _, pid in pool.map([object()] * 40)}  # type: ignore[list-item]
    finally:
        release.set()
        other.join()
    assert pids == {os.getpid()}


def test_children_render_at_a_lower_priority_and_end_with_the_pool() -> None:
    """The sending process must win a core over a renderer; no child outlives the pool."""
    import os

    from newsletter.delivery.buildpool import NICENESS

    if not can_fork():
        return
    parent = os.nice(0)
    pool = BuildPool(lambda r: (os.getpid(), os.nice(0)), processes=os.cpu_count() or 1)
    with pool:
        forked = len(pool._children)
        answers = [answer for _, answer in pool.map([object()] * 100)]  # type: ignore[list-item]
        children = {pid for pid, _ in answers}
    assert forked == os.cpu_count() or forked == 1
    assert len(children) == forked  # batches went round-robin to every child
    assert {nice for _, nice in answers} == {min(parent + NICENESS, 19)}
    for pid in children:  # reaped: the pid is no longer ours to wait for
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        raise AssertionError(f"child {pid} was not reaped")


def test_a_child_that_dies_is_an_error_not_a_hang() -> None:
    import os
    import signal

    import pytest

    from newsletter.errors import NewsletterError

    if not can_fork():
        return

    def work(item: object) -> int:
        if item == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return 1

    with BuildPool(work) as pool, pytest.raises(NewsletterError, match="ended unexpectedly"):
        list(pool.map(["ok"] * 40 + ["die"] + ["ok"] * 40))  # type: ignore[list-item]


def test_an_exception_in_a_child_reaches_the_parent_as_itself() -> None:
    import pytest

    def work(item: object) -> int:
        raise LookupError(f"no such thing: {item}")

    with BuildPool(work) as pool, pytest.raises(LookupError, match="no such thing: x"):
        list(pool.map(["x"]))  # type: ignore[list-item]
