"""Run the local E2B API in the foreground until SIGINT/SIGTERM: `python -m devstack.e2b_local --port N`."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from devstack.e2b_local.server import LocalE2B


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.e2b_local",
        description="Local E2B-compatible API for development. Loopback only; commands run on this host.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--api-key", default=None, help="accept only this X-API-KEY (default: any)")
    parser.add_argument("--reaper-interval", type=float, default=0.5, help="seconds between timeout sweeps")
    args = parser.parse_args(argv)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    api = LocalE2B(args.host, args.port, api_key=args.api_key, reaper_interval=args.reaper_interval).start()
    try:
        print(f"local E2B API on {api.url} (development double, not a sandbox: commands run on this host)")
        print(f"export E2B_API_URL={api.url} E2B_SANDBOX_URL={api.url} E2B_API_KEY={api.api_key}", flush=True)
        done.wait()
    finally:
        api.close()


if __name__ == "__main__":
    main()
