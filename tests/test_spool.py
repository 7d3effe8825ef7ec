"""The spool keeps the check's messages for the send, in order, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from newsletter import project as api
from newsletter.delivery.spool import PREFIX, RAW_BYTES, Spool, remove_stale
from tests.faults import write_list


def test_messages_come_back_in_the_order_their_batches_were_added(campaign: Path) -> None:
    addresses = write_list(campaign, 10)
    project = api.load_project(campaign, environ={})
    pairs = [(r, project.message(r)[1]) for r in project.recipients.recipients()]
    with Spool() as spool:
        first, second = spool.write(pairs[:4]), spool.write(pairs[4:])
        spool.add(first)
        spool.add(second)
        back = list(spool.messages())
        folder = spool.folder
        assert spool.count == 10
    assert [r.email for r, _ in back] == addresses
    assert [o.data for _, o in back] == [o.data for _, o in pairs]
    assert not folder.exists()


def test_a_large_file_is_compressed_and_reads_back_the_same(campaign: Path) -> None:
    write_list(campaign, 3)
    project = api.load_project(campaign, environ={})
    pairs = [(r, project.message(r)[1]) for r in project.recipients.recipients()]
    with Spool() as spool:
        spool._offset = RAW_BYTES + 1  # as if this process had written that much already
        spool._writer = (os.getpid(), os.open(spool.folder / f"{os.getpid()}.spool", os.O_WRONLY | os.O_CREAT, 0o600))
        location = spool.write(pairs)
        assert location[3] is True and location[2] < sum(len(o.data) for _, o in pairs)
        spool._offset = 0  # the file itself starts at 0; read it back from there
        spool.add((location[0], 0, location[2], True, location[4]))
        assert [o.data for _, o in spool.messages()] == [o.data for _, o in pairs]


def test_a_folder_left_by_a_killed_run_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=60
    )
    dead = tmp_path / f"{PREFIX}{int(done.stdout)}-abc"
    live = tmp_path / f"{PREFIX}{os.getpid()}-def"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "1.spool").write_bytes(b"messages")
    assert remove_stale(tmp_path) == [dead]
    assert not dead.exists() and live.exists()


def test_a_new_spool_lives_in_a_private_folder_named_for_its_process() -> None:
    with Spool() as spool:
        assert spool.folder.parent == Path(tempfile.gettempdir())
        assert spool.folder.name.startswith(f"{PREFIX}{os.getpid()}-")
        assert spool.folder.stat().st_mode & 0o777 == 0o700
