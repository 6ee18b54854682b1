"""local/README.md names every key of the dev stack's endpoints.json, and no key it does not write."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_local_readme_lists_exactly_the_keys_of_endpoints_json(devstack: dict[str, Any]) -> None:
    if devstack.get("smoke"):
        pytest.skip("a deployed stack has no endpoints.json")
    readme = (ROOT / "local" / "README.md").read_text()
    bullet = readme[readme.index("- `endpoints.json`") : readme.index("- `env.json`")]
    documented = set(re.findall(r"`([a-z_0-9]+)`", bullet)) - {"endpoints", "json"}
    nested = {
        "name",
        "project_id",
        "api_key",
        "devstack",
        "moto",
        "redis",
        "e2b",
    }  # keys inside projects and pids
    # The file as the dev stack wrote it (the fixture adds state_dir and log to what it yields).
    written = set(json.loads((Path(devstack["state_dir"]) / "endpoints.json").read_text()))
    assert written <= documented, (
        f"endpoints.json keys local/README.md does not name: {sorted(written - documented)}"
    )
    assert documented - nested <= written, f"named but not written: {sorted(documented - nested - written)}"
