"""The tool router: a project's tool catalog, the tools a session may use, search over them, and calls.

A session's tools are the built-ins (run_command, read_file, write_file, list_files, search_tools) and the
project's catalog tools, narrowed by the session's `config.tools` allow-list when it has one. Everything
that runs, runs in the session's workbench sandbox (session_service.services.workbench: the same lazy sandbox
and fence as execute). A catalog tool's arguments reach its command as data only: the arguments object as JSON
in the environment variable TOOL_ARGUMENTS, never interpolated into the command.

A tool's own failure (a non-zero exit, a missing file, a timeout) is a result with `is_error`, which an
agent can read; only what is not the tool's doing (no such tool, invalid arguments, the session is gone,
E2B down) is an error. Arguments are validated against the tool's input_schema before anything runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from typing import Any

from session_service.domain import clock, search
from session_service.domain.entities import ExecutionResult, SandboxFileError, Session, Tool, ToolResult
from session_service.domain.errors import BadRequest, NotFound, ValidationFailed
from session_service.domain.output import DEFAULT_OUTPUT_CAP, BoundedOutput, items_that_fit
from session_service.domain.ports import ToolStore
from session_service.domain.requests import (
    ENV_NAME,
    MAX_COMMAND_TIMEOUT_S,
    NO_NUL,
    TOOL_NAME,
    PutToolRequest,
    SearchToolsParams,
)
from session_service.domain.schemas import argument_problems, schema_problems
from session_service.services.workbench import Workbench

_NAME = re.compile(TOOL_NAME)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_PATH = {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": NO_NUL}
BUILTIN_TOOLS: tuple[Tool, ...] = (
    Tool(
        name="run_command",
        description="Run a shell command in the session's sandbox and return its output and exit code.",
        input_schema=_schema(
            {
                "command": {"type": "string", "minLength": 1, "maxLength": 16384, "pattern": NO_NUL},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_COMMAND_TIMEOUT_S},
                "cwd": _PATH,
                "env": {
                    "type": "object",
                    "propertyNames": {"pattern": ENV_NAME},
                    "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": NO_NUL},
                    "maxProperties": 64,
                },
            },
            ["command"],
        ),
        tags=("builtin", "sandbox", "shell"),
    ),
    Tool(
        name="read_file",
        description="Read a text file from the session's sandbox.",
        input_schema=_schema({"path": _PATH}, ["path"]),
        tags=("builtin", "sandbox", "files"),
    ),
    Tool(
        name="write_file",
        description="Write a text file in the session's sandbox, creating its directories; replaces it.",
        input_schema=_schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
        tags=("builtin", "sandbox", "files"),
    ),
    Tool(
        name="list_files",
        description="List the entries of a directory in the session's sandbox (default: the home directory).",
        input_schema=_schema({"path": _PATH}, []),
        tags=("builtin", "sandbox", "files"),
    ),
    Tool(
        name="search_tools",
        description="Search this session's tools by what they do: the best matches, with their schemas.",
        input_schema=_schema(
            {
                "query": {"type": "string", "minLength": 1, "maxLength": 1000},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            ["query"],
        ),
        tags=("builtin", "meta", "search"),
    ),
)
RESERVED_NAMES = frozenset(tool.name for tool in BUILTIN_TOOLS)


def _text(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def encode_name_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_name_cursor(cursor: str) -> str:
    try:
        name = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError) as error:
        raise BadRequest("invalid cursor") from error
    if not _NAME.match(name):
        raise BadRequest("invalid cursor")
    return name


class ToolCatalog:
    """A project's catalog tools (the project routes: PUT/GET/LIST/DELETE /v1/tools)."""

    def __init__(self, store: ToolStore, *, now: Callable[[], str] = clock.utc_now_iso) -> None:
        self._store = store
        self._now = now

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name):
            raise ValidationFailed(
                "invalid tool name",
                details=[{"loc": ["path", "tool_name"], "msg": f"must match {TOOL_NAME}", "type": "pattern"}],
            )
        if name in RESERVED_NAMES:
            raise ValidationFailed(
                f"{name} is a built-in tool; its name is reserved",
                details=[
                    {"loc": ["path", "tool_name"], "msg": "reserved for a built-in tool", "type": "reserved"}
                ],
            )

    def put(self, project_id: str, name: str, request: PutToolRequest) -> tuple[Tool, bool]:
        self._check_name(name)
        problems = schema_problems(request.input_schema)
        if problems:
            raise ValidationFailed("input_schema is not a valid JSON Schema of an object", details=problems)
        at = self._now()
        tool = Tool(
            name=name,
            description=request.description,
            input_schema=request.input_schema,
            tags=tuple(request.tags),
            command=request.command,
            timeout_s=request.timeout_s,
            created_at=at,
            updated_at=at,
        )
        created = self._store.put(project_id, tool)
        stored = self._store.get(project_id, name)
        return stored or tool, created

    def get(self, project_id: str, name: str) -> Tool:
        tool = self._store.get(project_id, name) if _NAME.match(name) else None
        if tool is None:
            raise NotFound("tool not found")
        return tool

    def page(self, project_id: str, limit: int, cursor: str | None) -> tuple[list[Tool], str | None]:
        after = decode_name_cursor(cursor) if cursor else None
        tools, last = self._store.page(project_id, limit, after)
        fit = items_that_fit([tool.to_api() for tool in tools])
        if fit < len(tools):  # a page too big for a response ends early, at its last whole tool
            return tools[:fit], encode_name_cursor(tools[fit - 1].name)
        return tools, encode_name_cursor(last) if last else None

    def delete(self, project_id: str, name: str) -> None:
        if not _NAME.match(name) or not self._store.delete(project_id, name):
            raise NotFound("tool not found")


class ToolRouter:
    """What an agent does with a session's tools: list, search, call (REST and MCP alike)."""

    def __init__(
        self,
        store: ToolStore,
        workbench: Workbench,
        *,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self._workbench = workbench
        self._output_cap = output_cap
        self._monotonic = monotonic or time.monotonic

    def live_session(self, project_id: str, session_id: str) -> Session:
        return self._workbench.live_session(project_id, session_id)

    def session_tools(self, project_id: str, session_id: str) -> tuple[Session, list[Tool]]:
        """The live session and its tools: built-ins first, then the catalog's by name, narrowed by the
        session's `config.tools` allow-list if it has one. NotFound for a deleted or foreign session."""
        session = self._workbench.live_session(project_id, session_id)
        catalog = sorted(self._store.catalog(project_id), key=lambda tool: tool.name)
        tools = [*BUILTIN_TOOLS, *catalog]
        allowed = session.config.get("tools")
        if isinstance(allowed, list):
            names = {name for name in allowed if isinstance(name, str)}
            tools = [tool for tool in tools if tool.name in names]
        return session, tools

    def search(
        self, project_id: str, session_id: str, params: SearchToolsParams
    ) -> tuple[list[tuple[Tool, float | None]], str | None]:
        """Ranked by relevance to `query` (BM25), best first; without a query, every tool by name, paged."""
        _, tools = self.session_tools(project_id, session_id)
        if params.query and params.query.strip():
            ranked: list[tuple[Tool, float | None]] = list(search.rank(tools, params.query, params.limit))
            # Best first: what does not fit a response is the least relevant (a narrower query finds it).
            return ranked[: items_that_fit([tool.to_agent(score) for tool, score in ranked])], None
        ordered = sorted(tools, key=lambda tool: tool.name)
        if params.cursor:
            after = decode_name_cursor(params.cursor)
            ordered = [tool for tool in ordered if tool.name > after]
        page = ordered[: params.limit]
        fit = items_that_fit([tool.to_agent(None) for tool in page])
        more = len(ordered) > fit
        page = page[:fit]
        return [(tool, None) for tool in page], encode_name_cursor(page[-1].name) if more else None

    def find(self, project_id: str, session_id: str, name: str) -> tuple[Session, Tool, list[Tool]]:
        session, tools = self.session_tools(project_id, session_id)
        tool = next((tool for tool in tools if tool.name == name), None)
        if tool is None:
            raise NotFound(f"no tool {name!r} in this session")
        return session, tool, tools

    def call(self, project_id: str, session_id: str, name: str, arguments: dict[str, Any]) -> ToolResult:
        """NotFound (no session, or no such tool in it), ValidationFailed (arguments break the schema:
        nothing runs), SandboxUnavailable; anything else is a result."""
        session, tool, tools = self.find(project_id, session_id, name)
        problems = argument_problems(tool.input_schema, arguments)
        if problems:
            raise ValidationFailed(f"the arguments do not match {name}'s input_schema", details=problems)
        started = self._monotonic()
        if tool.builtin:
            return self._builtin(session, tool, arguments, tools, started)
        execution = self._workbench.run_command(
            session,
            str(tool.command),
            timeout_s=tool.timeout_s,
            env={"TOOL_ARGUMENTS": json.dumps(arguments, separators=(",", ":"))},
            tool=tool.name,
        )
        return self._command_result(execution, structured_stdout=True)

    # -- built-ins -----------------------------------------------------------------------------------------

    def _builtin(
        self, session: Session, tool: Tool, arguments: dict[str, Any], tools: list[Tool], started: float
    ) -> ToolResult:
        if tool.name == "run_command":
            execution = self._workbench.run_command(
                session,
                arguments["command"],
                timeout_s=int(arguments.get("timeout_s", 10)),
                env=dict(arguments.get("env") or {}),
                cwd=arguments.get("cwd"),
                tool=tool.name,
            )
            return self._command_result(execution, structured_stdout=False)
        if tool.name == "search_tools":
            found = search.rank(tools, arguments["query"], int(arguments.get("limit", 10)))
            listed = [tool.to_agent(score) for tool, score in found]
            return ToolResult(
                content=_text(json.dumps(listed, separators=(",", ":"))),
                is_error=False,
                structured_content={"tools": listed},
                duration_ms=self._elapsed(started),
            )
        try:
            if tool.name == "read_file":
                sandbox_id, content = self._workbench.read_file(
                    session, arguments["path"], max_bytes=self._output_cap
                )
                bounded = BoundedOutput(self._output_cap)  # escaping: a control byte costs 7 on the wire
                bounded.feed(content.text)
                truncated = content.truncated or bounded.truncated
                structured = {"path": arguments["path"], "size": content.size, "truncated": truncated}
                return ToolResult(_text(bounded.text), False, structured, sandbox_id, self._elapsed(started))
            if tool.name == "write_file":
                sandbox_id, entry = self._workbench.write_file(
                    session, arguments["path"], arguments["content"]
                )
                structured = {"path": entry.path, "size": entry.size}
                text = f"wrote {entry.size} bytes to {entry.path}"
                return ToolResult(_text(text), False, structured, sandbox_id, self._elapsed(started))
            path = arguments.get("path", ".")
            sandbox_id, entries = self._workbench.list_files(session, path)
            listed = [{"name": e.name, "path": e.path, "type": e.type, "size": e.size} for e in entries]
            lines = [f"{e['type']:7} {e['size']:>10}  {e['path']}" for e in listed]
            # Each entry is in the text and in the structured content: both must fit the response.
            kept = items_that_fit([[line, entry] for line, entry in zip(lines, listed, strict=True)])
            structured = {"path": path, "entries": listed[:kept], "truncated": kept < len(listed)}
            text = "\n".join(lines[:kept]) or "(empty)"
            if kept < len(listed):
                text += f"\n[{len(listed) - kept} more entries not shown]"
            return ToolResult(_text(text), False, structured, sandbox_id, self._elapsed(started))
        except SandboxFileError as refused:
            return ToolResult(_text(str(refused)), True, None, session.sandbox_id, self._elapsed(started))

    def _command_result(self, execution: ExecutionResult, *, structured_stdout: bool) -> ToolResult:
        """A command's run as a tool result. Output appears once (each stream is already capped to fit the
        response): in the text for run_command, with the exit code and the counts as structured content; for
        a catalog tool, stdout as the text and, when it is a JSON object, also as structured content."""
        result = execution.result
        failed = result.timed_out or result.exit_code != 0
        facts = _command_facts(execution)
        if structured_stdout:
            text = (
                (result.stderr or result.stdout or f"exit code {result.exit_code}")
                if failed
                else result.stdout
            )
            structured = None
            if not failed and not result.stdout_truncated:
                try:
                    parsed = json.loads(result.stdout)
                except ValueError:
                    parsed = None
                structured = parsed if isinstance(parsed, dict) else None
        else:
            text = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
            if result.timed_out:
                text = f"[timed out]\n{text}"
            structured = facts
        return ToolResult(
            _text(text),
            failed,
            structured,
            execution.sandbox_id,
            execution.duration_ms,
            output=facts,
        )

    def _elapsed(self, started: float) -> int:
        return int((self._monotonic() - started) * 1000)


def _command_facts(execution: ExecutionResult) -> dict[str, Any]:
    """What a command did, without its output: exit code, timed out, and per stream the bytes it printed
    and whether the text returned is cut short."""
    outputs = ("stdout", "stderr", "sandbox_id", "duration_ms")
    return {k: v for k, v in execution.to_api().items() if k not in outputs}
