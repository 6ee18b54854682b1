"""The session's workbench: commands run in the session's own E2B sandbox, created on first use.

The fence: a new sandbox is recorded on the session with a conditional write that requires the session
not to be deleted (and its sandbox slot to be as we read it). If the write loses, the new sandbox is
killed at once: either the session was deleted meanwhile (answer 404; teardown may already have listed
its sandboxes and missed this one) or a concurrent first execute won (use its sandbox). So no path leaves
a sandbox that teardown cannot find or that outlives its session.

A create that fails on our side (E2B hung, our call timed out) may still be carried out when E2B answers
again. Two things keep that sandbox from becoming an orphan: every create for one slot of a session sends
the same idempotency key, so the next execute gets that very sandbox back instead of a second one; and a
teardown message delayed by `late_create_grace_seconds` re-checks the session, killing any of its sandboxes
that is not the recorded one (session_service.services.teardown).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from session_service.domain import clock
from session_service.domain.entities import (
    CommandResult,
    ExecutionResult,
    FileContent,
    FileEntry,
    Session,
    Tombstone,
    UsageRecord,
    sandbox_metadata,
)
from session_service.domain.errors import SandboxGone, SandboxUnavailable
from session_service.domain.ports import SandboxProvider, SessionStore, TeardownQueue
from session_service.domain.requests import ExecuteRequest
from session_service.observability import count, logger
from session_service.services import liveness
from session_service.services.activity import record_activity

T = TypeVar("T")

_MAX_ATTEMPTS = 3
# How long after a failed create a teardown re-checks the session (SQS allows at most 900 s of delay).
LATE_CREATE_GRACE_SECONDS = 120


def create_key(session_id: str, replaces: str | None) -> str:
    """The idempotency key of the create that fills one slot of a session: its first sandbox, or the one
    after `replaces`. E2B takes 1-255 lowercase letters, digits and hyphens."""
    raw = f"{session_id}-{'first' if replaces is None else 'after-' + replaces}".lower()
    return "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in raw)[:255]


class Workbench:
    def __init__(
        self,
        store: SessionStore,
        sandboxes: SandboxProvider,
        queue: TeardownQueue,
        *,
        default_template: str = "base",
        default_timeout_s: int = 300,
        late_create_grace_seconds: int = LATE_CREATE_GRACE_SECONDS,
        now: Callable[[], str] = clock.utc_now_iso,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._sandboxes = sandboxes
        self._queue = queue
        self._default_template = default_template
        self._default_timeout_s = default_timeout_s
        self._late_create_grace = late_create_grace_seconds
        self._now = now
        self._monotonic = monotonic

    def execute(self, project_id: str, session_id: str, request: ExecuteRequest) -> ExecutionResult:
        liveness.require_id(session_id)
        session = self._live(project_id, session_id)
        return self.run_command(
            session, request.command, timeout_s=request.timeout_s, env=request.env, cwd=request.cwd
        )

    def run_command(
        self,
        session: Session,
        command: str,
        *,
        timeout_s: int,
        env: dict[str, str],
        cwd: str | None = None,
        tool: str | None = None,
    ) -> ExecutionResult:
        """Run a command in the session's sandbox (created on first use, resumed when paused); a usage
        record is kept for it."""
        started = self._monotonic()

        def run(sandbox_id: str) -> CommandResult:
            return self._sandboxes.run(
                sandbox_id,
                command,
                timeout_s=timeout_s,
                env=env,
                cwd=cwd,
                sandbox_timeout_s=self._sandbox_timeout(session),
            )

        sandbox_id, result, session = self._in_sandbox(session, run)
        execution = ExecutionResult(sandbox_id, result, int((self._monotonic() - started) * 1000))
        self._record_usage(session, execution, tool)
        record_activity(self._store, session)
        return execution

    def read_file(self, session: Session, path: str, *, max_bytes: int) -> tuple[str, FileContent]:
        timeout = self._sandbox_timeout(session)
        sandbox_id, content, _ = self._in_sandbox(
            session,
            lambda box: self._sandboxes.read_file(box, path, max_bytes=max_bytes, sandbox_timeout_s=timeout),
        )
        return sandbox_id, content

    def write_file(self, session: Session, path: str, content: str) -> tuple[str, FileEntry]:
        timeout = self._sandbox_timeout(session)
        sandbox_id, entry, _ = self._in_sandbox(
            session, lambda box: self._sandboxes.write_file(box, path, content, sandbox_timeout_s=timeout)
        )
        return sandbox_id, entry

    def list_files(self, session: Session, path: str) -> tuple[str, list[FileEntry]]:
        timeout = self._sandbox_timeout(session)
        sandbox_id, entries, _ = self._in_sandbox(
            session, lambda box: self._sandboxes.list_files(box, path, sandbox_timeout_s=timeout)
        )
        return sandbox_id, entries

    def live_session(self, project_id: str, session_id: str) -> Session:
        """The session, or NotFound when it is unknown, another project's or deleted."""
        return self._live(project_id, session_id)

    def _in_sandbox(self, session: Session, operation: Callable[[str], T]) -> tuple[str, T, Session]:
        """`operation(sandbox_id)` in the session's sandbox: created (and fenced) on first use, replaced when
        it vanished (killed, expired) while the session lives on."""
        sandbox_id = session.sandbox_id or self._create_and_fence(session, replaces=None)
        for _ in range(_MAX_ATTEMPTS):
            try:
                return sandbox_id, operation(sandbox_id), session
            except SandboxGone:
                # Killed (by teardown after a delete, or by hand) or expired: a live session gets a new one.
                session = self._live(session.project_id, session.session_id)
                if session.sandbox_id not in (None, sandbox_id):
                    sandbox_id = session.sandbox_id  # a concurrent call already replaced it
                else:
                    sandbox_id = self._create_and_fence(session, replaces=sandbox_id)
        raise SandboxUnavailable("the session's sandbox kept disappearing; retry the request")

    def _live(self, project_id: str, session_id: str) -> Session:
        return liveness.require_live(self._store, project_id, session_id)

    def _sandbox_timeout(self, session: Session) -> int:
        value = session.config.get("sandbox_timeout_s", self._default_timeout_s)
        return value if isinstance(value, int) and 10 <= value <= 86_400 else self._default_timeout_s

    def _create_and_fence(self, session: Session, *, replaces: str | None) -> str:
        template = session.config.get("sandbox_template", self._default_template)
        try:
            sandbox_id = self._sandboxes.create(
                sandbox_metadata(session.project_id, session.session_id),
                template=template if isinstance(template, str) and template else self._default_template,
                timeout_s=self._sandbox_timeout(session),
                idempotency_key=create_key(session.session_id, replaces),
            )
        except SandboxUnavailable:
            # E2B may still create it (our call timed out, or the process dies here). It carries the
            # session's metadata and this slot's key: the next execute gets it back, a delayed teardown run
            # kills it if it is still not the session's sandbox by then (or the session was deleted).
            self._hand_to_teardown(session, delay_seconds=self._late_create_grace)
            raise
        if self._store.attach_sandbox(session.project_id, session.session_id, sandbox_id, replaces=replaces):
            count("SandboxesCreated")
            return sandbox_id
        # Fenced out: the session was deleted meanwhile, or a concurrent execute recorded a sandbox first
        # (with the same key, E2B may have handed both of us the same one: that one is kept).
        current = self._store.get(session.project_id, session.session_id)
        if current is not None and not current.is_deleted and current.sandbox_id == sandbox_id:
            count("SandboxCreateRacesLost")
            return sandbox_id
        self._kill_fenced_out(session, sandbox_id)
        winner = self._live(session.project_id, session.session_id)  # deleted → 404
        if winner.sandbox_id in (None, replaces):
            raise SandboxUnavailable("could not record the session's sandbox; retry the request")
        count("SandboxCreateRacesLost")
        return str(winner.sandbox_id)

    def _kill_fenced_out(self, session: Session, sandbox_id: str) -> None:
        try:
            self._sandboxes.kill(sandbox_id)
            return
        except SandboxUnavailable:
            logger.exception("could not kill a fenced-out sandbox", extra={"sandbox_id": sandbox_id})
            count("FencedSandboxKillFailures")
        # Not lost: it carries the session's metadata. If the session is deleted (teardown may already have
        # listed it), hand it one more run now; on a live session its own teardown will find it later.
        current = self._store.get(session.project_id, session.session_id)
        if current is not None and current.deleted_at is not None:
            self._hand_to_teardown(current)

    def _hand_to_teardown(self, session: Session, delay_seconds: int = 0) -> None:
        tombstone = Tombstone(session.project_id, session.session_id, session.deleted_at or "")
        if not self._queue.send(tombstone, delay_seconds=delay_seconds):
            logger.error(
                "could not enqueue a teardown for a stray sandbox", extra={"session_id": session.session_id}
            )
            count("StraySandboxEnqueueFailures")

    def _record_usage(self, session: Session, execution: ExecutionResult, tool: str | None) -> None:
        self._store.record_usage(
            UsageRecord(
                project_id=session.project_id,
                session_id=session.session_id,
                sandbox_id=execution.sandbox_id,
                at=self._now(),
                duration_ms=execution.duration_ms,
                exit_code=execution.result.exit_code,
                timed_out=execution.result.timed_out,
                tool=tool,
            )
        )
