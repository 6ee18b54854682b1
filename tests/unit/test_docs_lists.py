"""The docs' lists that mirror code cannot drift: generated ones are current, hand-written ones name exactly
what the code has (issue 21: the environment-variable table, the stack's parameters and resources, the
dev stack's local overrides; endpoints.json's keys are checked against a running dev stack in
tests/e2e/test_docs_endpoints.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from devstack.functions import LocalEndpoints, local_overrides
from session_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from layers import load_template  # noqa: E402

# Read by code outside Settings (observability, Powertools) or set by Lambda itself.
NOT_IN_SETTINGS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL", "TRACE_SDK"}
FROM_LAMBDA = {"region": "AWS_REGION", "function_name": "AWS_LAMBDA_FUNCTION_NAME"}


def section(path: Path, heading_text: str, end_text: str) -> str:
    text = path.read_text()
    start = text.index(heading_text)
    return text[start : text.index(end_text, start)]


def test_the_generated_lists_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docs_lists.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_environment_table_names_every_variable_and_no_other() -> None:
    table = section(ROOT / "docs" / "architecture.md", "| Variable ", "Locally the dev stack also sets")
    first_column = [line.split("|")[1] for line in table.splitlines() if line.startswith("|")]
    documented = {name for cell in first_column for name in re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", cell)}
    template = load_template()
    in_template = set((template["Globals"]["Function"].get("Environment") or {}).get("Variables") or {})
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            in_template |= set(((resource["Properties"].get("Environment") or {}).get("Variables")) or {})
    settings = {FROM_LAMBDA.get(name, name.upper()) for name in Settings.model_fields}
    assert in_template - NOT_IN_SETTINGS <= settings, in_template - NOT_IN_SETTINGS - settings
    assert documented == settings | in_template, (
        f"missing from the table: {sorted(settings | in_template - documented)}; "
        f"in the table but read by nothing: {sorted(documented - settings - in_template)}"
    )


def test_local_readme_names_every_local_override() -> None:
    endpoints = LocalEndpoints(
        aws_endpoint_url="http://127.0.0.1:1", region="us-east-1",
        e2b_api_url="http://127.0.0.1:3", e2b_sandbox_url="http://127.0.0.1:4", e2b_api_key="k",
        websocket_management_url="http://127.0.0.1:5",
    )  # fmt: skip
    readme = (ROOT / "local" / "README.md").read_text()
    missing = [name for name in local_overrides(endpoints) if f"`{name}`" not in readme]
    assert not missing, f"local/README.md does not name the local overrides {missing}"
