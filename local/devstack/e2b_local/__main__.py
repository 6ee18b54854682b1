"""Run the local E2B API in the foreground until SIGINT/SIGTERM: `python -m devstack.e2b_local --port N`.

On the first SIGINT/SIGTERM it kills every sandbox's process groups, stops serving and exits 0, in well under
a second; a second signal exits at once (128 + the signal's number) after SIGKILLing the groups. When it
leads a session of its own (the dev stack starts it so), it finally SIGKILLs whatever is left in that session:
the sandbox groups stay in it, so nothing a command started can outlive the server (Linux).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from devstack.e2b_local.server import LocalE2B
from devstack.services import kill_sessions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.e2b_local",
        description="Local E2B-compatible API for development. Loopback only; commands run on this host.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--api-key", default=None, help="accept only this X-API-KEY (default: any)")
    parser.add_argument("--reaper-interval", type=float, default=0.5, help="seconds between timeout sweeps")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="sandbox directories (default: a temporary one, deleted at exit)",
    )
    args = parser.parse_args(argv)

    signals: list[int] = []
    api: LocalE2B | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)  # no lock taken here: the main thread may hold any of them
        if len(signals) > 1:
            if api is not None:
                api.registry.kill_all_now()
            _sweep_own_session()
            os._exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    api = LocalE2B(
        args.host, args.port, api_key=args.api_key, reaper_interval=args.reaper_interval, root=args.root
    ).start()
    try:
        print(f"local E2B API on {api.url} (development double, not a sandbox: commands run on this host)")
        print(f"export E2B_API_URL={api.url} E2B_SANDBOX_URL={api.url} E2B_API_KEY={api.api_key}", flush=True)
        while not signals:
            time.sleep(0.1)  # a signal interrupts the sleep; its handler only records it
    finally:
        api.close()
        _sweep_own_session()
    return 0


def _sweep_own_session() -> None:
    if os.getsid(0) == os.getpid():
        kill_sessions({os.getpid()})


if __name__ == "__main__":
    sys.exit(main())
