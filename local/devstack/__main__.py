"""`make dev`: the Docker-free local stack in the foreground (stop it with Ctrl-C or SIGTERM).

Starts moto server, redis-server and the local E2B API, provisions template.yaml's tables, queues and
secrets, seeds demo projects, serves the HTTP API on 127.0.0.1:$PORT (default 3000) and writes
<state-dir>/endpoints.json once everything is ready, plus <state-dir>/env.json for `sam local invoke
--env-vars`. See local/README.md.

The first SIGINT/SIGTERM stops everything and exits 0 within 5 s, whatever is still open; past STOP_DEADLINE
a stop that got stuck anyway is forced (exit 1). A second SIGINT/SIGTERM forces the exit at once: every child,
its process group and its session are SIGKILLed, and the exit status is 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from devstack.services import ServiceError
from devstack.stack import DOCKER_HOST, RESTART_DELAY, DevStack, DevStackConfig

STOP_DEADLINE = 4.0  # seconds; the stop itself is bounded well below this (see DevStack.stop)
log = logging.getLogger("devstack")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devstack", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "3000")),
        help="gateway port on 127.0.0.1 (0: a free port; default $PORT or 3000)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".devstack"),
        help="where endpoints.json, env.json and service logs go (default .devstack)",
    )
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    parser.add_argument(
        "--stage",
        help="serve under this stage instead of the HttpApi's StageName "
        "('$default' serves at the root, like `sam local start-api`)",
    )
    parser.add_argument(
        "--max-workers", type=int, default=4, help="worker processes per function (default 4)"
    )
    parser.add_argument(
        "--authorizer-cache",
        action="store_true",
        help="cache authorizer decisions for ReauthorizeEvery seconds, as API Gateway does",
    )
    parser.add_argument(
        "--docker-host",
        nargs="?",
        const=DOCKER_HOST,
        default=None,
        metavar="HOST",
        help=f"write env.json for a container: services at HOST (default {DOCKER_HOST})",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, as `sam deploy --parameter-overrides` takes them",
    )
    parser.add_argument(
        "--restart-delay",
        type=float,
        default=RESTART_DELAY,
        help=f"seconds before a redis-server that died is replaced by an empty one (default {RESTART_DELAY}; "
        "negative: never)",
    )
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo projects")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    signals: list[int] = []
    stack: DevStack | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only record the first one: a handler runs between two bytecodes of the main thread, which may
        # hold any lock at that moment (an Event's, a logging handler's), so it must not take one.
        signals.append(signum)
        if len(signals) > 1:
            _force_exit(stack, 128 + signum, "a second signal")

    try:
        parameters = _parameters(args.parameter_overrides)
    except ValueError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 2
    config = DevStackConfig(
        template_path=args.template,
        state_dir=args.state_dir,
        port=args.port,
        region=args.region,
        stage=args.stage,
        max_workers=args.max_workers,
        authorizer_cache=args.authorizer_cache,
        docker_host=args.docker_host,
        projects=() if args.no_seed else DevStackConfig().projects,
        parameters=parameters,
        restart_delay=args.restart_delay if args.restart_delay >= 0 else None,
    )
    stack = DevStack(config)
    unknown = sorted(set(parameters) - set(stack.template.parameters))
    if unknown:
        print(f"devstack: the template has no parameter {', '.join(unknown)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.perf_counter()
    try:
        stack.start()  # on failure it has stopped what it started
    except (OSError, ServiceError) as error:
        hint = " (is it already running? try --port 0 or PORT=...)" if isinstance(error, OSError) else ""
        print(f"devstack: could not start: {error}{hint}", file=sys.stderr)
        return 1
    try:
        log.info("ready in %.1fs", time.perf_counter() - started)
        print(stack.walkthrough(), flush=True)
        while not signals:
            time.sleep(0.1)  # a signal interrupts the sleep; its handler only records it
            if not signals:
                _revive(stack)
    finally:
        _stop(stack)
    return 0


def _parameters(overrides: list[str]) -> dict[str, str]:
    parameters = {}
    for override in overrides:
        name, equals, value = override.partition("=")
        if not equals or not name:
            raise ValueError(f"--parameter-overrides takes NAME=VALUE, not {override!r}")
        parameters[name] = value
    return parameters


def _revive(stack: DevStack) -> None:
    """From the main thread, between signals: so no restart races the stop, and the new server gets the
    parent-death signal (which follows the forking thread)."""
    try:
        stack.revive()
    except (OSError, ServiceError) as error:
        log.error("could not restart redis-server: %s", error)


def _stop(stack: DevStack) -> None:
    """`stack.stop()` on a thread of its own, so that the main thread stays free for signals (a second one
    forces the exit) and can force it too if the stop is still running at STOP_DEADLINE."""
    stopper = threading.Thread(target=stack.stop, name="devstack-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_DEADLINE)
    if stopper.is_alive():
        _force_exit(stack, 1, f"a stop still running after {STOP_DEADLINE:.0f}s")


def _force_exit(stack: DevStack | None, code: int, why: str) -> NoReturn:
    if stack is not None:
        stack.kill()
    os.write(2, f"devstack: {why}: killed every process of the stack\n".encode())  # no locks: print takes one
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
