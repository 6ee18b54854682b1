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

from devstack.functions import InProcessInvoker, LocalEndpoints, local_overrides
from devstack.provision import provision
from devstack.services import MotoServer
from devstack.template import Template

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
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


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((ROOT / "events" / name).read_text())
    data.update(changes)
    return data


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
    template = Template.load(ROOT / "template.yaml")
    with MotoServer() as moto:
        resources = provision(template, endpoint_url=moto.url, region=REGION)
        endpoints = LocalEndpoints(moto.url, REGION, "http://127.0.0.1:9", "http://127.0.0.1:9", "unused")
        invoker = InProcessInvoker(template, resources, local_overrides(endpoints))
        for name, value in local_overrides(endpoints).items():
            os.environ.setdefault(name, value)
        from session_service.runtime import container_for
        from session_service.settings import Settings

        admin = container_for(
            Settings(
                region=REGION,
                aws_endpoint_url=moto.url,
                projects_table=resources.ref("ProjectsTable"),
                api_keys_table=resources.ref("ApiKeysTable"),
            )
        ).admin
        project = admin.create_project("bench-encryption")
        authorizer = {"lambda": {"project_id": project.project_id}}

        def http(name: str, **changes: Any) -> dict[str, Any]:
            data = event(name, **changes)
            data["requestContext"]["authorizer"] = authorizer
            return data

        def invoke(function: str, data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
            reply = invoker.invoke(function, data, env_overrides=env)
            assert reply["statusCode"] < 300, reply
            return json.loads(reply["body"])

        metadata = json.dumps({"user_id": "bench", "metadata": {"channel": "slack", "note": "x" * 512}})
        sessions = {
            mode: invoke("CreateSessionFunction", http("create_session.json", body=metadata), env)["id"]
            for mode, env in (("keyed", KEYED), ("plain", PLAIN))
        }

        def get(mode: str, env: dict[str, str]) -> Callable[[], Any]:
            sid = sessions[mode]
            data = http("get_session.json", rawPath=f"/v1/sessions/{sid}", pathParameters={"session_id": sid})
            return lambda: invoke("GetSessionFunction", json.loads(json.dumps(data)), env)

        def append(mode: str, env: dict[str, str]) -> Callable[[], Any]:
            sid = sessions[mode]
            body = json.dumps({"content": {"role": "user", "text": "hello " * 40}})
            data = http(
                "append_message.json",
                rawPath=f"/v1/sessions/{sid}/messages",
                pathParameters={"session_id": sid},
                body=body,
            )
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
