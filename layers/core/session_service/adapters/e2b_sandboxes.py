"""The sandbox provider on E2B, through the real `e2b` SDK.

Teardown lists by metadata in both states (running and paused) and kills by id with the SDK's static kill:
it never connects, because connecting resumes a paused sandbox. Vendor errors become domain outcomes:
404 on kill is "already gone" (False), 429 is SandboxRateLimited, anything else SandboxUnavailable.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2b import CommandExitException, FileType, Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import (
    AuthenticationException,
    FileNotFoundException,
    InvalidArgumentException,
    NotFoundException,
    RateLimitException,
    SandboxNotRunningException,
    TimeoutException,
)

from session_service.domain.entities import (
    CommandResult,
    FileContent,
    FileEntry,
    SandboxFileError,
    SandboxListing,
    sandbox_metadata,
)
from session_service.domain.errors import (
    SandboxGone,
    SandboxRateLimited,
    SandboxUnavailable,
    ValidationFailed,
)
from session_service.domain.output import BoundedOutput
from session_service.observability import logger
from session_service.settings import Settings

PAGE_SIZE = 100  # E2B's maximum page size
KEY_REJECTED = (
    "E2B rejected the API key (401): put a valid E2B key in the E2B API key secret (stack output "
    "E2bApiKeySecretArn). Until then no sandbox can be created and every teardown fails and is dead-lettered."
)


def _key_rejected(error: AuthenticationException) -> SandboxUnavailable:
    logger.error(KEY_REJECTED, extra={"error": repr(error)})
    return SandboxUnavailable("the sandbox service rejected our API key")


class E2BSandboxProvider:
    def __init__(self, settings: Settings, api_key: str) -> None:
        self._opts: dict[str, Any] = {
            "api_key": api_key,
            # The SDK's transport bounds a call by the sum of its read and write timeouts, each set to
            # `request_timeout`: an E2B that takes the connection and never answers held every call for
            # twice the configured value (20 s, measured). Half of it makes E2B_REQUEST_TIMEOUT_SECONDS the
            # real bound of a create, connect, list or kill (a command's own run time is `timeout_s`).
            "request_timeout": settings.e2b_request_timeout_seconds / 2,
        }
        if settings.e2b_api_url:
            self._opts["api_url"] = settings.e2b_api_url
        if settings.e2b_sandbox_url:
            self._opts["sandbox_url"] = settings.e2b_sandbox_url
        self._output_cap = settings.command_output_cap_bytes

    def list_session_sandboxes(self, project_id: str, session_id: str, max_items: int) -> SandboxListing:
        query = SandboxQuery(
            metadata=sandbox_metadata(project_id, session_id),
            state=[SandboxState.RUNNING, SandboxState.PAUSED],
        )
        found: list[str] = []
        try:
            paginator = Sandbox.list(query=query, limit=min(PAGE_SIZE, max_items), **self._opts)
            while paginator.has_next and len(found) < max_items:
                found += [info.sandbox_id for info in paginator.next_items()]
        except RateLimitException as error:
            raise SandboxRateLimited("E2B is rate limiting sandbox listing") from error
        except AuthenticationException as error:
            raise _key_rejected(error) from error
        except Exception as error:
            logger.warning("E2B list failed", extra={"session_id": session_id, "error": repr(error)})
            raise SandboxUnavailable("could not list the session's sandboxes") from error
        return SandboxListing(
            sandbox_ids=found[:max_items], truncated=paginator.has_next or len(found) > max_items
        )

    def kill(self, sandbox_id: str) -> bool:
        try:
            return bool(Sandbox.kill(sandbox_id, **self._opts))
        except NotFoundException:
            return False
        except RateLimitException as error:
            raise SandboxRateLimited(f"E2B rate limited the kill of {sandbox_id}") from error
        except AuthenticationException as error:
            raise _key_rejected(error) from error
        except Exception as error:
            raise SandboxUnavailable(f"could not kill sandbox {sandbox_id}: {error}") from error

    def create(
        self, metadata: dict[str, str], *, template: str, timeout_s: int, idempotency_key: str | None = None
    ) -> str:
        try:
            sandbox = Sandbox.create(
                template=template,
                timeout=timeout_s,
                metadata=metadata,
                lifecycle={"on_timeout": "pause"},  # idle sandboxes pause; teardown kills paused ones too
                idempotency_key=idempotency_key,
                **self._opts,
            )
        except RateLimitException as error:
            raise SandboxRateLimited("E2B is rate limiting sandbox creation") from error
        except AuthenticationException as error:
            raise _key_rejected(error) from error
        except Exception as error:
            logger.warning("E2B create failed", extra={"error": repr(error)})
            raise SandboxUnavailable("the sandbox service is unavailable; nothing was run") from error
        return str(sandbox.sandbox_id)

    def run(
        self,
        sandbox_id: str,
        command: str,
        *,
        timeout_s: int,
        env: dict[str, str],
        cwd: str | None,
        sandbox_timeout_s: int,
    ) -> CommandResult:
        stdout, stderr = BoundedOutput(self._output_cap), BoundedOutput(self._output_cap)

        def result(exit_code: int | None, timed_out: bool = False) -> CommandResult:
            return CommandResult(
                stdout=stdout.text,
                stderr=stderr.text,
                exit_code=exit_code,
                timed_out=timed_out,
                stdout_truncated=stdout.truncated,
                stderr_truncated=stderr.truncated,
                stdout_bytes=stdout.total_bytes,
                stderr_bytes=stderr.total_bytes,
            )

        sandbox = self._connect(sandbox_id, sandbox_timeout_s)
        try:
            # retain_output=False: the SDK keeps nothing; the callbacks cap each stream as it arrives.
            done = sandbox.commands.run(
                command,
                envs=env or None,
                cwd=cwd,
                timeout=timeout_s,
                on_stdout=stdout.feed,
                on_stderr=stderr.feed,
                retain_output=False,
            )
            return result(done.exit_code)
        except CommandExitException as exited:
            return result(exited.exit_code)
        except (SandboxNotRunningException, NotFoundException) as error:
            # Killed or paused under us (e.g. teardown). SandboxNotRunningException subclasses
            # TimeoutException, so it must be caught before the command-timeout case.
            raise SandboxGone(sandbox_id) from error
        except InvalidArgumentException as error:
            # e.g. a cwd that does not exist in the sandbox: the client's mistake, not an outage.
            raise ValidationFailed(
                f"the sandbox rejected the command: {error}",
                details=[{"loc": ["body"], "msg": str(error), "type": "sandbox_invalid_argument"}],
            ) from error
        except TimeoutException:
            return result(None, timed_out=True)
        except Exception as error:
            logger.warning("E2B command failed", extra={"sandbox_id": sandbox_id, "error": repr(error)})
            raise SandboxUnavailable("the sandbox did not run the command") from error

    # -- files ----------------------------------------------------------------------------------------------

    def _connect(self, sandbox_id: str, sandbox_timeout_s: int) -> Sandbox:
        """connect() resumes a paused sandbox and extends its timeout; only the workbench does this."""
        try:
            return Sandbox.connect(sandbox_id, timeout=sandbox_timeout_s, **self._opts)
        except NotFoundException as error:
            raise SandboxGone(sandbox_id) from error
        except Exception as error:
            logger.warning("E2B connect failed", extra={"sandbox_id": sandbox_id, "error": repr(error)})
            raise SandboxUnavailable("the sandbox service is unavailable; nothing was done") from error

    def read_file(self, sandbox_id: str, path: str, *, max_bytes: int, sandbox_timeout_s: int) -> FileContent:
        sandbox = self._connect(sandbox_id, sandbox_timeout_s)
        with _file_errors(sandbox_id, path):
            info = sandbox.files.get_info(path)
            if info.type != FileType.FILE:
                raise SandboxFileError(f"{path} is not a file")
            kept, size = bytearray(), 0
            with sandbox.files.read(path, format="stream") as stream:
                for chunk in stream:  # never more than max_bytes in memory, however big the file
                    size += len(chunk)
                    kept += chunk[: max(0, max_bytes - len(kept))]
                    if len(kept) >= max_bytes:
                        break
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            text = decoder.decode(bytes(kept), final=False)  # a character cut by the cap is dropped
            total = max(size, int(info.size or 0))
            return FileContent(text=text, size=total, truncated=total > len(kept))

    def write_file(self, sandbox_id: str, path: str, content: str, *, sandbox_timeout_s: int) -> FileEntry:
        sandbox = self._connect(sandbox_id, sandbox_timeout_s)
        with _file_errors(sandbox_id, path):
            written = sandbox.files.write(path, content)
        return FileEntry(name=written.name, path=written.path, type="file", size=len(content.encode()))

    def list_files(self, sandbox_id: str, path: str, *, sandbox_timeout_s: int) -> list[FileEntry]:
        sandbox = self._connect(sandbox_id, sandbox_timeout_s)
        with _file_errors(sandbox_id, path):
            entries = sandbox.files.list(path, depth=1)
        return [
            FileEntry(
                name=entry.name,
                path=entry.path,
                type=entry.type.value if entry.type is not None else "unknown",
                size=int(entry.size or 0),
            )
            for entry in entries
        ]


@contextmanager
def _file_errors(sandbox_id: str, path: str) -> Iterator[None]:
    """The sandbox's refusals are the tool's failure (reported to the agent); the rest is ours."""
    try:
        yield
    except SandboxFileError:
        raise
    except FileNotFoundException as error:
        raise SandboxFileError(f"no such file or directory: {path}") from error
    except InvalidArgumentException as error:
        raise SandboxFileError(f"{path}: {error}") from error
    except (SandboxNotRunningException, NotFoundException) as error:
        raise SandboxGone(sandbox_id) from error
    except Exception as error:
        logger.warning("E2B file call failed", extra={"sandbox_id": sandbox_id, "error": repr(error)})
        raise SandboxUnavailable("the sandbox did not answer the file request") from error
