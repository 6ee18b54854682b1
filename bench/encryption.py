"""What per-session content keys cost (docs/architecture.md, "Erasure"), measured in one run.

The same handlers, invoked as Lambda invokes them (the template's environment, moto for DynamoDB and KMS),
once with content keys (as deployed) and once with them switched off (KEYS_TABLE and CONTENT_KEY_ID unset:
content stored plain), interleaved call by call so that both see the same machine:
- append a message, and GET a session on a cache miss (no Redis: every GET reads DynamoDB and opens the
  metadata): p50 with keys / p50 without (goal <= 1.15);
- KMS and keys-table calls per request on a warm process (goal: 0), and on a process's first request;
- the cold-start import: the handler module does not import `cryptography` (it is imported on the first
  seal/open), so the import cost is unchanged; the first request pays the import, printed against a bare
  `import boto3`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package, from any cwd
from bench.stack import BenchStack

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 200
GOAL_RATIO = 1.15
PLAIN = {"KEYS_TABLE": "", "CONTENT_KEY_ID": "", "REDIS_HOST": ""}
KEYED = {"REDIS_HOST": ""}

calls: Counter[str] = Counter()
_original = botocore.client.BaseClient._make_api_call


def _counting(client: Any, operation: str, params: dict[str, Any]) -> Any:
    service = client.meta.service_model.service_name
    table = params.get("TableName") or ",".join(params.get("RequestItems", {})) or ""
    calls[f"{service}:{operation}" + (f"({table.rsplit('-', 1)[-1]})" if table else "")] += 1
    return _original(client, operation, params)


def interleaved_p50(a: Callable[[], Any], b: Callable[[], Any], rounds: int = ROUNDS) -> tuple[float, float]:
    for _ in range(10):
        a(), b()
    samples_a, samples_b = [], []
    for _ in range(rounds):
        for fn, samples in ((a, samples_a), (b, samples_b)):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples_a) * 1000, statistics.median(samples_b) * 1000


def fresh_interpreter_ms(source: str, runs: int = 7) -> float:
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - started

    empty = statistics.median(run("pass") for _ in range(3))
    return (statistics.median(run(source) for _ in range(runs)) - empty) * 1000


def main() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        rows, warm, first = measure()
    print("content keys: with / without, interleaved in one run (p50, ms)")
    print(f"  {'request':<26}{'with':>9}{'without':>9}{'ratio':>8}   goal")
    for name, keyed, plain in rows:
        ratio = keyed / plain
        mark = "PASS" if ratio <= GOAL_RATIO else "FAIL"
        print(f"  {name:<26}{keyed:>9.2f}{plain:>9.2f}{ratio:>8.2f}   <= {GOAL_RATIO}  {mark}")
    kms_warm = sum(n for call, n in warm.items() if call.startswith("kms:"))
    keys_warm = sum(n for call, n in warm.items() if "KeysTable" in call)
    print(
        f"  warm process, {2 * ROUNDS} requests: {kms_warm} KMS calls, {keys_warm} keys-table reads"
        + "   goal 0  "
        + ("PASS" if kms_warm == 0 and keys_warm == 0 else "FAIL")
    )
    print(f"  a process's first GET of a project's session: {dict(first)}")
    boto3_ms = fresh_interpreter_ms("import boto3")
    module = str(ROOT / "functions/get_session/app.py")
    handler_ms = fresh_interpreter_ms(f"import runpy; runpy.run_path({module!r})")
    crypto_ms = fresh_interpreter_ms("from cryptography.hazmat.primitives.ciphers.aead import AESGCM")
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys; runpy.run_path(sys.argv[1]); print('cryptography' in sys.modules)",
            module,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"  cold start: GetSessionFunction's module imports cryptography: {imported} "
        f"(module {handler_ms:.0f} ms = {handler_ms / boto3_ms:.2f}x import boto3 {boto3_ms:.0f} ms); "
        f"the first seal/open imports it: +{crypto_ms:.0f} ms ({crypto_ms / boto3_ms:.2f}x import boto3)"
    )


def measure() -> tuple[list[tuple[str, float, float]], Counter[str], Counter[str]]:
    with BenchStack() as stack:

        def invoke(function: str, data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
            reply = stack.invoker.invoke(function, data, env_overrides=env)
            assert reply["statusCode"] < 300, reply
            return json.loads(reply["body"])

        create = json.dumps({"user_id": "bench", "metadata": {"channel": "slack", "note": "x" * 512}})
        sessions = {
            mode: invoke(
                "CreateSessionFunction",
                stack.http_event("create_session.json", "/v1/sessions", body=create),
                env,
            )["id"]
            for mode, env in (("keyed", KEYED), ("plain", PLAIN))
        }

        def get(mode: str, env: dict[str, str]) -> Callable[[], Any]:
            sid = sessions[mode]
            data = stack.http_event("get_session.json", f"/v1/sessions/{sid}", sid)
            return lambda: invoke("GetSessionFunction", json.loads(json.dumps(data)), env)

        def append(mode: str, env: dict[str, str]) -> Callable[[], Any]:
            sid = sessions[mode]
            body = json.dumps({"content": {"role": "user", "text": "hello " * 40}})
            data = stack.http_event("append_message.json", f"/v1/sessions/{sid}/messages", sid, body=body)
            return lambda: invoke("AppendMessageFunction", json.loads(json.dumps(data)), env)

        botocore.client.BaseClient._make_api_call = _counting  # type: ignore[method-assign]
        try:
            rows = []
            for name, make in (("GET (cache miss)", get), ("append a message", append)):
                keyed, plain = interleaved_p50(make("keyed", KEYED), make("plain", PLAIN))
                rows.append((name, keyed, plain))
            calls.clear()
            for _ in range(ROUNDS):
                get("keyed", KEYED)()
                append("keyed", KEYED)()
            warm = Counter({call: n for call, n in calls.items() if call.startswith("kms") or "Keys" in call})
            calls.clear()
            # A new process: the same function under another name gets a composition root of its own.
            get("keyed", {**KEYED, "AWS_LAMBDA_FUNCTION_NAME": "GetSessionFunction-cold"})()
            first = Counter({call: n for call, n in calls.items()})
        finally:
            botocore.client.BaseClient._make_api_call = _original  # type: ignore[method-assign]
    return rows, warm, first


if __name__ == "__main__":
    main()
