"""`make dev`: the Docker-free local stack in the foreground (stop it with Ctrl-C or SIGTERM).

Starts moto server, redis-server and the local E2B API, provisions template.yaml's tables, queues and
secrets, seeds demo projects, serves the HTTP API on 127.0.0.1:$PORT (default 3000) and writes
<state-dir>/endpoints.json once everything is ready, plus <state-dir>/env.json for `sam local invoke
--env-vars`. See local/README.md.
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

from devstack.services import ServiceError
from devstack.stack import DOCKER_HOST, DevStack, DevStackConfig


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
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo projects")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("devstack").setLevel(logging.WARNING if args.quiet else logging.INFO)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
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
    )
    stack = DevStack(config)
    started = time.perf_counter()
    try:
        try:
            stack.start()
        except (OSError, ServiceError) as error:
            hint = " (is it already running? try --port 0 or PORT=...)" if isinstance(error, OSError) else ""
            print(f"devstack: could not start: {error}{hint}", file=sys.stderr)
            return 1
        logging.getLogger("devstack").info("ready in %.1fs", time.perf_counter() - started)
        print(stack.walkthrough(), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
