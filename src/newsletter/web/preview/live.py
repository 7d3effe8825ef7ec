"""The campaign as the preview page sees it: reloaded when its files change, cached otherwise.

The page polls `version()`, a fingerprint of the files' sizes and modification
times: a few `stat` calls, cheap enough to ask every second. A request after a
change loads the project afresh; the recipients CSV is read again only when the
CSV itself changed, since that is the slow part for a list of 100,000 rows.
A load or render that fails is kept as the state's error, never raised into the
server.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.checks.findings import Finding
from newsletter.checks.message import Sample, Sources, check_message
from newsletter.checks.rows import row_findings, scan_recipients
from newsletter.errors import InputError
from newsletter.inputs.folder import CampaignFolder
from newsletter.inputs.recipients import Recipient, RecipientList, RowProblems
from newsletter.message.builder import Outgoing
from newsletter.project import Project
from newsletter.render.renderer import Rendered

KEPT_ROWS = 20  # invalid or duplicate rows listed on the page; the rest are counted
# Recent recipients' messages are kept so that the iframe, the JSON and the .eml
# download of one recipient are one message (same Date, same Message-ID).
KEPT_RENDERS = 32


@dataclass(frozen=True)
class Source:
    """The campaign the page shows, and how to load it (the CLI's global options and settings)."""

    folder: CampaignFolder
    load: Callable[[], Project]

    def rows(self) -> RecipientList:
        """The list as `load` would open it: the picker works even when the templates do not."""
        return self.folder.rows()

    def watched(self) -> list[Path]:
        return self.folder.watched()


def fingerprint(paths: Iterable[Path]) -> str:
    """A short hash of each file's identity, size and modification time; missing files count."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
        else:
            digest.update(f"{path}\0{stat.st_ino}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class RecipientIndex(RowProblems):
    """Every valid recipient in list order, searchable by address and name."""

    keep: int = KEPT_ROWS
    recipients: list[Recipient] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    haystacks: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, rows: RecipientList) -> RecipientIndex:
        index = cls()
        for row in rows:
            if isinstance(row, Recipient):
                index.positions[row.key] = len(index.recipients)
                index.recipients.append(row)
                index.haystacks.append(f"{row.email}\n{row.name}".casefold())
            else:
                index.note(row)
        return index

    def find(self, email: str | None) -> int | None:
        """The position of `email` (any case); the first recipient when no address is given."""
        if not email:
            return 0 if self.recipients else None
        return self.positions.get(email.strip().casefold())

    def search(self, query: str, *, limit: int) -> tuple[list[int], int]:
        """Positions of the first `limit` recipients whose address or name holds every word."""
        words = query.casefold().split()
        found: list[int] = []
        total = 0
        for position, haystack in enumerate(self.haystacks):
            if all(word in haystack for word in words):
                total += 1
                if len(found) < limit:
                    found.append(position)
        return found, total


@dataclass(frozen=True)
class Rendition:
    """One recipient's finished message, or why it could not be made."""

    position: int
    recipient: Recipient
    rendered: Rendered | None = None
    outgoing: Outgoing | None = None
    findings: tuple[Finding, ...] = ()
    error: InputError | None = None
    links: int = 0
    images: int = 0


@dataclass
class State:
    """The campaign at one version of its files."""

    version: str
    project: Project | None
    error: InputError | None
    rows: RecipientList | None
    index: RecipientIndex | None = None
    index_error: InputError | None = None
    csv_stamp: str = ""
    _campaign_findings: list[Finding] | None = None
    _sources: Sources | None = None
    _renders: OrderedDict[str, Rendition] = field(default_factory=OrderedDict)


class LiveCampaign:
    """Thread-safe access to the current `State`; the server's only view of the campaign."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._lock = threading.RLock()
        self._state: State | None = None

    @property
    def folder(self) -> Path:
        return self.source.folder.root

    def version(self) -> str:
        return fingerprint(self.source.watched())

    def state(self) -> State:
        """The state for the files as they are now, loading them again if anything changed."""
        version = self.version()  # taken before loading: a change during the load shows next time
        with self._lock:
            if self._state is None or self._state.version != version:
                self._state = self._load(version, self._state)
            self._index(self._state)
            return self._state

    def _load(self, version: str, previous: State | None) -> State:
        try:
            project = self.source.load()
        except InputError as exc:
            state = State(version, None, exc, self.source.rows())
        else:
            state = State(version, project, None, project.recipients)
        if previous is not None and previous.rows == state.rows:
            state.index, state.index_error = previous.index, previous.index_error
            state.csv_stamp = previous.csv_stamp
        return state

    def _index(self, state: State) -> None:
        if state.rows is None:
            return
        stamp = fingerprint([state.rows.path])
        if stamp == state.csv_stamp:
            return
        state.csv_stamp = stamp
        try:
            state.index, state.index_error = RecipientIndex.read(state.rows), None
        except InputError as exc:
            state.index, state.index_error = None, exc

    def campaign_findings(self, state: State) -> list[Finding]:
        """Rows that will not be sent to, and fields the templates cannot fill (first rows)."""
        with self._lock:
            if state._campaign_findings is None:
                findings: list[Finding] = []
                if state.index is not None and state.rows is not None:
                    index = state.index
                    findings += row_findings(
                        state.rows.path,
                        index.invalid,
                        index.duplicates,
                        invalid_count=index.invalid_count,
                        duplicate_count=index.duplicate_count,
                        folder=self.folder.resolve(),
                        shown=KEPT_ROWS,
                    )
                    if state.project is not None:
                        findings = scan_recipients(state.project) + findings
                state._campaign_findings = findings
            return state._campaign_findings

    def render(self, state: State, position: int) -> Rendition:
        """The message for the recipient at `position` of the index, kept for later requests."""
        assert state.index is not None
        recipient = state.index.recipients[position]
        with self._lock:
            kept = state._renders.get(recipient.key)
            if kept is not None:
                state._renders.move_to_end(recipient.key)
                return kept
            rendition = self._render(state, position, recipient)
            state._renders[recipient.key] = rendition
            if len(state._renders) > KEPT_RENDERS:
                state._renders.popitem(last=False)
            return rendition

    def _render(self, state: State, position: int, recipient: Recipient) -> Rendition:
        project = state.project
        if project is None:
            assert state.error is not None
            return Rendition(position, recipient, error=state.error)
        try:
            rendered, outgoing = project.message(recipient)
        except InputError as exc:
            return Rendition(position, recipient, error=exc)
        if state._sources is None:
            state._sources = Sources(project)
        sample = Sample.of(project, recipient, rendered, outgoing, sources=state._sources)
        findings = tuple(check_message(sample))
        return Rendition(
            position, recipient, rendered, outgoing, findings, links=len(sample.links), images=len(sample.images)
        )
