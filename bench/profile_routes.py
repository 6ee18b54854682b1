"""Where a warm request's CPU goes: cProfile over many warm invocations of one handler (issue 29).

    .venv/bin/python bench/profile_routes.py [get_hit|get_miss|delete|authorizer] [N]

Prints the functions with the most own time (tottime) and the most cumulative time among ours and the
libraries' entry points, for N invocations (default 2,000) after a warm-up, on the same local stack as
`make bench` (moto over HTTP, redis-server). The raw calls' own cost is in the bench, not here: this says
what the handler spends around them.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.counting import install
from bench.stack import BenchStack, sample_event


def handler_and_event(stack: BenchStack, route: str) -> tuple[str, Any, Any]:
    session_id = stack.create_session(config={"model": "m1"}, metadata={"channel": "bench"})
    path = f"/v1/sessions/{session_id}"
    if route in ("get_hit", "get_miss"):
        return "GetSessionFunction", stack.http_event("get_session.json", path, session_id), session_id
    if route == "delete":
        return "DeleteSessionFunction", stack.http_event("delete_session.json", path, session_id), session_id
    event = sample_event("authorizer.json", identitySource=[stack.api_key])
    event["headers"]["x-api-key"] = stack.api_key
    return "AuthorizerFunction", event, session_id


def main(argv: list[str]) -> int:
    route = argv[0] if argv else "get_hit"
    count = int(argv[1]) if len(argv) > 1 else 2000
    install()
    with BenchStack() as stack:
        function, event, session_id = handler_and_event(stack, route)
        from session_service.adapters.redis_cache import cache_key

        key = cache_key(stack.project_id, session_id)
        with stack.handler(function) as handle:
            for _ in range(50):
                handle(event)
            prepared = [handle.prepare(event) for _ in range(count)]
            profile = cProfile.Profile()
            for one in prepared:
                if route == "get_miss":
                    stack.redis.delete(key)
                profile.enable()
                handle.run(one)
                profile.disable()
                if route == "delete":
                    from bench.overhead import _revive

                    _revive(stack, session_id)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    sys.__stdout__.write(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
