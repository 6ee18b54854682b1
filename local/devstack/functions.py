"""Run the template's functions the way Lambda does: with their own environment, a context object, a
timeout, cold and warm starts.

Two runtimes share one definition of a function's environment (`function_env`):
- `InProcessInvoker` for tests: the handler runs in the test process, so a failure shows its traceback
  and a debugger can step into it. os.environ is process-global, so calls with different environments
  take turns while calls with the same environment run concurrently.
- `ProcessRuntime` for the gateway: each function runs in worker processes with exactly its environment,
  like Lambda's execution environments; the function's Timeout is enforced by killing the worker.

What differs from the cloud is listed in ONE place, `local_overrides`, and explained in local/README.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import IO, Any, Protocol

from devstack.limits import response_too_large
from devstack.template import Function, LocalResources, Template, TemplateError, resolve_string
from devstack.worker import FRAME_HEADER as _FRAME_HEADER
from devstack.worker import LambdaContext, encode_frame, error_payload

INIT_TIMEOUT = 10.0  # Lambda gives the init phase (imports, module-level code) 10 s
STOP_GRACE = 0.5  # seconds an idle worker has to exit after EOF before it is killed
KILL_WAIT = 1.0  # seconds to wait for a killed worker's exit
DEFAULT_MAX_WORKERS = 4
LAMBDA_PYTHON = "python3.13"

# Variables that would point an SDK at a real account; never inherited by a local function.
_HOST_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@dataclass(frozen=True)
class LocalEndpoints:
    """Where the local services listen; the overrides below are derived from this and nothing else."""

    aws_endpoint_url: str
    region: str = "us-east-1"
    e2b_api_url: str | None = None
    e2b_sandbox_url: str | None = None
    e2b_api_key: str | None = None
    websocket_management_url: str | None = None


def local_overrides(endpoints: LocalEndpoints) -> dict[str, str]:
    """THE list of environment differences between a local function and the same function in the cloud.

    Keep local/README.md ("What differs from the cloud") in step with this function.
    """
    overrides = {
        # Every AWS SDK call (boto3, PynamoDB) goes to moto; Lambda has no such variable.
        "AWS_ENDPOINT_URL": endpoints.aws_endpoint_url,
        # Lambda sets the region and a role's temporary credentials; locally they are fixed dummies...
        "AWS_REGION": endpoints.region,
        "AWS_DEFAULT_REGION": endpoints.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        # ...and the developer's own profile, config and instance role are unreachable, so that a
        # misconfigured endpoint can never touch a real account.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        # ElastiCache Serverless accepts TLS only; the local redis-server speaks plain TCP.
        "REDIS_TLS": "false",
        # No X-Ray daemon locally. (POWERTOOLS_METRICS_NAMESPACE is kept: metrics are EMF lines in the log.)
        "POWERTOOLS_TRACE_DISABLED": "true",
        # What `sam local` sets; Powertools and other libraries recognise it.
        "AWS_SAM_LOCAL": "true",
    }
    # The local E2B API instead of api.e2b.app; the key is given directly (the E2B secret in moto holds the
    # same value, so code that reads E2B_API_KEY_SECRET_ARN gets it too).
    if endpoints.e2b_api_url:
        overrides["E2B_API_URL"] = endpoints.e2b_api_url
        overrides["E2B_SANDBOX_URL"] = endpoints.e2b_sandbox_url or endpoints.e2b_api_url
    if endpoints.e2b_api_key:
        overrides["E2B_API_KEY"] = endpoints.e2b_api_key
    # The local WebSocket API's management endpoint instead of https://{api}.execute-api.{region}/{stage}.
    if endpoints.websocket_management_url:
        overrides["WEBSOCKET_ENDPOINT"] = endpoints.websocket_management_url
    return overrides


def lambda_variables(function: Function, resources: LocalResources) -> dict[str, str]:
    """The variables the Lambda service itself sets in every execution environment."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]devstack",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime or LAMBDA_PYTHON}",
        "AWS_REGION": resources.region,
        "AWS_DEFAULT_REGION": resources.region,
        "LAMBDA_TASK_ROOT": str(function.code_uri),
        "_HANDLER": function.handler,
        "TZ": ":UTC",
    }


def template_variables(template: Template, logical_id: str, resources: LocalResources) -> dict[str, str]:
    """Globals + the function's Environment.Variables, resolved against the local resources."""
    function = template.function(logical_id)
    return {
        name: resolve_string(value, resources, f"{logical_id}.Environment.Variables.{name}")
        for name, value in function.variables.items()
    }


def function_env(
    template: Template,
    logical_id: str,
    resources: LocalResources,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of a local function: template variables, then what Lambda sets, then the
    local overrides (which win, e.g. REDIS_TLS)."""
    function = template.function(logical_id)
    return {
        **template_variables(template, logical_id, resources),
        **lambda_variables(function, resources),
        **(overrides or {}),
    }


def lambda_context(
    function: Function, resources: LocalResources, request_id: str | None = None
) -> LambdaContext:
    return LambdaContext(
        function_name=function.logical_id,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{resources.region}:{resources.account_id}:function:{function.logical_id}",
        memory_limit_in_mb=function.memory_size,
        aws_request_id=request_id or str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function.logical_id}",
        log_stream_name=f"{time.strftime('%Y/%m/%d')}/[$LATEST]devstack",
        deadline_ms=int(time.time() * 1000) + function.timeout * 1000,
    )


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation, as the Lambda service reports it to a caller such as API Gateway."""

    function: str
    request_id: str
    result: Any = None
    error: dict[str, Any] | None = None  # {"errorType", "errorMessage", "stackTrace"} when it failed
    duration_ms: float = 0.0
    init_ms: float | None = None  # set on a cold start

    @property
    def ok(self) -> bool:
        return self.error is None


class FunctionError(RuntimeError):
    """The function failed (unhandled exception, timeout, crash); `error` is Lambda's error payload."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        self.error = invocation.error or {}
        super().__init__(
            f"{invocation.function}: {self.error.get('errorType')}: {self.error.get('errorMessage')}"
        )


class RuntimeStopped(RuntimeError):
    """The runtime was stopped (the dev stack is stopping): no invocation runs any more."""


class FunctionRuntime(Protocol):
    """What the gateway (and later the SQS poller and scheduler) needs from a runtime."""

    def execute(self, logical_id: str, event: Any) -> Invocation: ...


# --------------------------------------------------------------------------------------------------------
# In-process.
# --------------------------------------------------------------------------------------------------------


class _SharedEnviron:
    """Applies one environment to os.environ at a time. Callers with the same environment share it and run
    concurrently; a caller with another environment waits until they are done, and newcomers with the
    current environment queue behind it, so no environment starves."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._key: frozenset[tuple[str, str]] | None = None
        self._active = 0
        self._waiting_other = 0
        self._saved: dict[str, str | None] = {}

    @contextlib.contextmanager
    def applied(self, env: Mapping[str, str], unset: frozenset[str] = frozenset()) -> Iterator[None]:
        key = frozenset(env.items()) | frozenset((name, "\0unset") for name in unset)
        counted = False
        with self._condition:
            while self._active and (self._key != key or self._waiting_other - counted > 0):
                if self._key != key and not counted:
                    self._waiting_other += 1
                    counted = True
                self._condition.wait()
            if counted:
                self._waiting_other -= 1
            if not self._active:
                self._apply(env, unset)
                self._key = key
            self._active += 1
        try:
            yield
        finally:
            with self._condition:
                self._active -= 1
                if not self._active:
                    self._restore()
                    self._key = None
                    self._condition.notify_all()

    def _apply(self, env: Mapping[str, str], unset: frozenset[str]) -> None:
        self._saved = {name: os.environ.get(name) for name in {*env, *unset}}
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(env)

    def _restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}


_ENVIRON = _SharedEnviron()  # one per process, like os.environ itself


def applied_env(
    env: Mapping[str, str], unset: frozenset[str] = frozenset()
) -> contextlib.AbstractContextManager[None]:
    """Apply variables to os.environ for a block, taking turns with in-process invocations."""
    return _ENVIRON.applied(env, unset)


class InProcessInvoker:
    """Calls handlers in this process with their template environment (tests).

    The handler module is loaded by file path under a unique name per function (`lambda_<LogicalId>`),
    never via sys.path, so two functions' `app.py` do not collide. It is imported on the first call, with
    the function's environment applied, like Lambda's init phase. Unhandled exceptions propagate from
    `invoke` (the test shows the real traceback); `execute` reports them as Lambda would.
    Limits: the function's Timeout is not enforced in-process, and the test process's own variables stay
    visible unless the template gives another function a variable of the same name (those are unset).
    """

    def __init__(
        self, template: Template, resources: LocalResources, overrides: Mapping[str, str] | None = None
    ) -> None:
        self.template = template
        self.resources = resources
        self.overrides = dict(overrides or {})
        self._functions = template.functions
        self._modules: dict[str, ModuleType] = {}
        self._load_lock = threading.Lock()
        self._envs: dict[str, dict[str, str]] = {}
        template_names = {name for fn in self._functions.values() for name in fn.variables}
        self._foreign = frozenset(template_names | set(_HOST_AWS_VARIABLES))

    def env_for(self, logical_id: str, env_overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        if logical_id not in self._envs:
            self._envs[logical_id] = function_env(self.template, logical_id, self.resources, self.overrides)
        return {**self._envs[logical_id], **(env_overrides or {})}

    def invoke(self, logical_id: str, event: Any, env_overrides: Mapping[str, str] | None = None) -> Any:
        """Call the handler and return its result; exceptions propagate."""
        function = self._function(logical_id)
        env = self.env_for(logical_id, env_overrides)
        with _ENVIRON.applied(env, self._foreign - env.keys()):
            handler = self._handler(function)
            return handler(event, lambda_context(function, self.resources))

    @contextlib.contextmanager
    def bound(
        self, logical_id: str, env_overrides: Mapping[str, str] | None = None
    ) -> Iterator[Callable[..., Any]]:
        """`call(event, context=None)` runs the handler with the function's environment applied once for
        the whole block, as Lambda's runtime applies it once per execution environment: benchmarks time the
        handler alone (and may make the context beforehand: `context_for`). Other in-process invocations
        with another environment wait until the block ends."""
        function = self._function(logical_id)
        env = self.env_for(logical_id, env_overrides)
        with _ENVIRON.applied(env, self._foreign - env.keys()):
            handler = self._handler(function)
            yield lambda event, context=None: handler(event, context or self.context_for(logical_id))

    def context_for(self, logical_id: str) -> LambdaContext:
        """A fresh context object for one invocation of the function, as Lambda hands it to the handler."""
        return lambda_context(self._function(logical_id), self.resources)

    def execute(
        self, logical_id: str, event: Any, env_overrides: Mapping[str, str] | None = None
    ) -> Invocation:
        """Call the handler and report the outcome as Lambda does (an exception, or a response over Lambda's
        limit, becomes an error payload)."""
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            result = self.invoke(logical_id, event, env_overrides=env_overrides)
        except Exception as error:
            return Invocation(logical_id, request_id, error=error_payload(error), duration_ms=_ms(started))
        too_large = response_too_large(result)
        if too_large is not None:
            return Invocation(logical_id, request_id, error=too_large, duration_ms=_ms(started))
        return Invocation(logical_id, request_id, result=result, duration_ms=_ms(started))

    def _function(self, logical_id: str) -> Function:
        try:
            return self._functions[logical_id]
        except KeyError:
            raise TemplateError(f"no function {logical_id!r} in the template") from None

    def _handler(self, function: Function) -> Any:
        with self._load_lock:
            module = self._modules.get(function.logical_id)
            if module is None:
                module = self._modules[function.logical_id] = _load_module(function)
        return getattr(module, function.handler.rpartition(".")[2])


def _load_module(function: Function) -> ModuleType:
    module_path = function.handler.rpartition(".")[0].replace(".", "/")
    candidates = [function.code_uri / f"{module_path}.py", function.code_uri / module_path / "__init__.py"]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        raise TemplateError(f"{function.logical_id}: handler module not found: {candidates[0]}")
    name = f"lambda_{function.logical_id}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TemplateError(f"{function.logical_id}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so dataclasses, pickling and tracebacks can find it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --------------------------------------------------------------------------------------------------------
# Worker processes.
# --------------------------------------------------------------------------------------------------------


class _WorkerGone(Exception):
    pass


class _Worker:
    """One execution environment: a `devstack.worker` process and its two frame pipes."""

    def __init__(self, function: Function, env: Mapping[str, str], log: IO[bytes] | None) -> None:
        self.function = function
        child_in, self._to_child = os.pipe()
        self._from_child, child_out = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack.worker", str(function.code_uri), function.handler,
                 str(child_in), str(child_out)],
                env=dict(env),
                cwd=function.code_uri,
                pass_fds=(child_in, child_out),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches the dev stack, which stops workers in order
            )  # fmt: skip
        except BaseException:
            os.close(self._to_child)
            os.close(self._from_child)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        self.ready = False
        self.init_ms: float | None = None
        self._stopped = False
        self._input_closed = False
        self._stop_lock = threading.Lock()

    def start(self, timeout: float) -> dict[str, Any] | None:
        """Wait for the init phase; returns Lambda's init error payload if the handler cannot be loaded."""
        message = self._receive(time.monotonic() + timeout)
        if message is None:
            raise TimeoutError
        if message["type"] == "init_error":
            return dict(message["error"])
        self.ready = True
        self.init_ms = float(message["init_ms"])
        return None

    def call(self, event: Any, context: LambdaContext, deadline: float) -> dict[str, Any] | None:
        """Send one event; the reply frame, or None when the deadline passed first."""
        frame = encode_frame({"event": event, "context": context.__dict__})
        try:
            view = memoryview(frame)
            while view:
                written = os.write(self._to_child, view)
                view = view[written:]
        except OSError as broken:
            raise _WorkerGone from broken
        return self._receive(deadline)

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        header = self._read_exact(_FRAME_HEADER.size, deadline)
        if header is None:
            return None
        (length,) = _FRAME_HEADER.unpack(header)
        body = self._read_exact(length, deadline)
        return None if body is None else dict(json.loads(body))

    def _read_exact(self, size: int, deadline: float) -> bytes | None:
        """`size` bytes from the worker, None if the deadline passes first; _WorkerGone at EOF."""
        chunks: list[bytes] = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_child], [], [], remaining)[0]:
                return None
            chunk = os.read(self._from_child, min(size, 1 << 20))
            if not chunk:
                raise _WorkerGone
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close_input(self) -> None:
        """EOF on the request pipe: an idle worker exits by itself (stop() then only waits)."""
        with self._stop_lock:
            if not self._input_closed:
                self._input_closed = True
                os.close(self._to_child)

    def stop(self, grace: float = 2.0) -> None:
        """Close the request pipe, wait for the exit, kill the worker if it lingers. Idempotent, bounded."""
        self.close_input()
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill_now()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=KILL_WAIT)
            os.close(self._from_child)

    def kill(self) -> None:
        self.kill_now()
        self.stop()

    def kill_now(self) -> None:
        """SIGKILL the worker's process group (it leads its own session) without waiting for anything."""
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    self.process.kill()


class FunctionPool:
    """The execution environments of one function: started on demand (cold), reused (warm), at most
    `max_workers` at once so that concurrent requests run concurrently; a busy pool queues callers."""

    def __init__(
        self,
        function: Function,
        env: Mapping[str, str],
        resources: LocalResources,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        log: IO[bytes] | None = None,
    ) -> None:
        self.function = function
        self.env = {**_worker_base_env(), **env}
        self.resources = resources
        self.max_workers = max_workers
        self.log = log
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._count = 0
        self._condition = threading.Condition()
        self._closed = False
        self._closing: list[_Worker] = []
        self.cold_starts = 0

    def execute(self, event: Any) -> Invocation:
        context = lambda_context(self.function, self.resources)
        started = time.perf_counter()
        worker = self._acquire()
        init_ms = None
        try:
            if not worker.ready:
                init_error = worker.start(max(INIT_TIMEOUT, float(self.function.timeout)))
                init_ms = worker.init_ms
                if init_error is not None:
                    self._discard(worker)
                    return self._outcome(context, started, init_ms, error=init_error)
            # The Timeout counts from here, as on Lambda (the init phase has a limit of its own).
            context.deadline_ms = int(time.time() * 1000) + self.function.timeout * 1000
            reply = worker.call(event, context, time.monotonic() + self.function.timeout)
        except _WorkerGone:
            self._discard(worker)
            code = worker.process.returncode
            status = f"signal: {-code}" if code is not None and code < 0 else f"exit status {code}"
            message = f"RequestId: {context.aws_request_id} Error: Runtime exited with error: {status}"
            return self._outcome(
                context, started, init_ms, error={"errorType": "Runtime.ExitError", "errorMessage": message}
            )
        except TimeoutError:  # the init phase did not finish in time
            reply = None
        except BaseException:
            self._discard(worker, kill=True)
            raise
        if reply is None:  # timed out: Lambda stops the environment; the next call gets a new one
            self._discard(worker, kill=True)
            message = (
                f"RequestId: {context.aws_request_id} Error: Task timed out after "
                f"{self.function.timeout:.2f} seconds"
            )
            return self._outcome(
                context, started, init_ms, error={"errorType": "Sandbox.Timedout", "errorMessage": message}
            )
        self._release(worker)
        if reply["type"] == "result":
            return self._outcome(context, started, init_ms, result=reply["result"])
        return self._outcome(context, started, init_ms, error=reply["error"])

    def _outcome(
        self,
        context: LambdaContext,
        started: float,
        init_ms: float | None,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> Invocation:
        return Invocation(
            self.function.logical_id,
            context.aws_request_id,
            result=result,
            error=error,
            duration_ms=_ms(started),
            init_ms=init_ms,
        )

    def _acquire(self) -> _Worker:
        with self._condition:
            while True:
                if self._closed:
                    raise RuntimeStopped(f"{self.function.logical_id}: the runtime is stopped")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.max_workers:
                    self._count += 1
                    break
                self._condition.wait()
        try:
            worker = _Worker(self.function, self.env, self.log)
        except BaseException:
            with self._condition:
                self._count -= 1
                self._condition.notify()
            raise
        with self._condition:
            self._all.add(worker)
            self.cold_starts += 1
            closed = self._closed
        if closed:  # stop() ran while the worker was being started: it must not run an invocation
            self._discard(worker, kill=True)
            raise RuntimeStopped(f"{self.function.logical_id}: the runtime is stopped")
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._condition:
            if not self._closed:
                self._idle.append(worker)
                self._condition.notify()
                return
        self._discard(worker)

    def _discard(self, worker: _Worker, *, kill: bool = False, grace: float = 0.5) -> None:
        """Only the thread that owns the worker (or stop(), for idle ones) may close its pipes."""
        if kill:
            worker.kill()
        else:
            worker.stop(grace=grace)
        with self._condition:
            self._all.discard(worker)
            self._count -= 1
            self._condition.notify()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop idle workers gracefully and kill busy ones (their callers get a Runtime.ExitError)."""
        self.close()
        self.wait_closed(time.monotonic() + grace)

    def close(self) -> None:
        """Refuse new invocations, kill busy workers (their callers get a Runtime.ExitError at once, so a
        long invocation cannot hold up a stop) and send EOF to idle ones, which then exit by themselves."""
        with self._condition:
            self._closed = True
            self._closing, busy = list(self._idle), [w for w in self._all if w not in self._idle]
            self._idle.clear()
            self._condition.notify_all()
        for worker in busy:
            worker.kill_now()  # the owning thread sees EOF and discards it
        for worker in self._closing:
            worker.close_input()  # all exit in parallel

    def wait_closed(self, deadline: float) -> None:
        """Wait for the idle workers `close()` ended until `deadline`, then kill those still running."""
        self.wait_exited(deadline)
        self.kill_stragglers()
        closing, self._closing = self._closing, []
        for worker in closing:
            self._discard(worker, grace=max(0.0, deadline - time.monotonic()))

    def wait_exited(self, deadline: float) -> None:
        """Give the idle workers `close()` ended until `deadline` to exit by themselves (in parallel: each
        already has its EOF)."""
        for worker in self._closing:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))

    def kill_stragglers(self) -> None:
        """SIGKILL every closed worker still running, all before waiting for any (a stop with many workers
        must not pay one kill-and-reap after another)."""
        for worker in self._closing:
            if worker.process.poll() is None:
                worker.kill_now()

    def kill_now(self) -> list[int]:
        """SIGKILL every worker without taking a lock or waiting (a forced exit); their pids. Best effort."""
        try:
            workers = list(self._all)
        except RuntimeError:  # changed while being read
            return []
        for worker in workers:
            worker.kill_now()
        return [worker.process.pid for worker in workers]

    def pids(self) -> list[int]:
        with self._condition:
            return [worker.process.pid for worker in self._all if worker.process.returncode is None]

    @property
    def size(self) -> int:
        return self._count


def _worker_base_env() -> dict[str, str]:
    """The few host variables a worker needs besides the function's own (Lambda sets PATH and LANG too)."""
    base = {"PATH": os.environ.get("PATH", os.defpath), "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1"}  # fmt: skip
    for name in ("PYTHONPATH", "TMPDIR", "SYSTEMROOT"):
        if name in os.environ:
            base[name] = os.environ[name]
    return base


class ProcessRuntime:
    """The functions of a template, each in its own pool of worker processes (the gateway's runtime)."""

    def __init__(
        self,
        template: Template,
        resources: LocalResources,
        overrides: Mapping[str, str] | None = None,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        log: IO[bytes] | None = None,
    ) -> None:
        self.template = template
        self.resources = resources
        self.overrides = dict(overrides or {})
        self.max_workers = max_workers
        self.log = log
        self._pools: dict[str, FunctionPool] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def env_for(self, logical_id: str) -> dict[str, str]:
        return function_env(self.template, logical_id, self.resources, self.overrides)

    def pool(self, logical_id: str) -> FunctionPool:
        with self._lock:
            if self._stopped:
                raise RuntimeStopped(f"{logical_id}: the runtime is stopped")
            pool = self._pools.get(logical_id)
            if pool is None:
                function = self.template.function(logical_id)
                pool = FunctionPool(
                    function,
                    self.env_for(logical_id),
                    self.resources,
                    max_workers=self.max_workers,
                    log=self.log,
                )
                self._pools[logical_id] = pool
            return pool

    def execute(self, logical_id: str, event: Any) -> Invocation:
        return self.pool(logical_id).execute(event)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """The result, or FunctionError carrying Lambda's error payload."""
        invocation = self.execute(logical_id, event)
        if not invocation.ok:
            raise FunctionError(invocation)
        return invocation.result

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Every pool at once: busy workers are killed, idle ones get `grace` seconds to exit. Bounded."""
        with self._lock:
            pools = [] if self._stopped else list(self._pools.values())
            self._stopped = True  # execute() is refused from now on, so no new worker can start
        for pool in pools:
            pool.close()
        deadline = time.monotonic() + grace
        for pool in pools:
            pool.wait_exited(deadline)
        for pool in pools:
            pool.kill_stragglers()
        for pool in pools:
            pool.wait_closed(deadline)

    def kill_now(self) -> list[int]:
        """SIGKILL every worker now, taking no lock (a forced exit); their pids (= their sessions)."""
        return [pid for pool in list(self._pools.values()) for pid in pool.kill_now()]

    def pids(self) -> list[int]:
        """The running workers' pids (each leads a session of its own)."""
        with self._lock:
            pools = list(self._pools.values())
        return [pid for pool in pools for pid in pool.pids()]
