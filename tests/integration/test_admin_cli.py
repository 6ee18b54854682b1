"""`session-admin` against the local tables (the same code path as --stack against AWS, minus the lookup
of table names in the stack's outputs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugins.api import Api
from session_service.edges import cli


@pytest.fixture
def endpoints_file(tmp_path: Path, local_resources: Any, local_endpoints: Any) -> Path:
    path = tmp_path / "endpoints.json"
    path.write_text(
        json.dumps(
            {
                "aws_endpoint_url": local_endpoints.aws_endpoint_url,
                "region": local_endpoints.region,
                "tables": {
                    "ProjectsTable": local_resources.ref("ProjectsTable"),
                    "ApiKeysTable": local_resources.ref("ApiKeysTable"),
                },
            }
        )
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = cli.main(list(args))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def test_create_issue_list_revoke(
    capsys: pytest.CaptureFixture[str], endpoints_file: Path, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PROJECTS_TABLE", "API_KEYS_TABLE"):
        monkeypatch.delenv(name, raising=False)
    local = ["--local", "--endpoints", str(endpoints_file)]
    code, [project] = run(capsys, *local, "create-project", "acme")
    assert code == 0 and project["project_id"].startswith("prj_")
    code, [issued] = run(capsys, *local, "issue-key", project["project_id"])
    assert code == 0 and issued["api_key"].startswith("ssk_")
    assert api.call("GET", "/v1/sessions", key=issued["api_key"]).status == 200
    code, listed = run(capsys, *local, "list-keys", project["project_id"])
    assert [k["key_id"] for k in listed] == [issued["key_id"]] and listed[0]["revoked_at"] is None
    assert "api_key" not in listed[0] and issued["api_key"] not in json.dumps(listed)
    code, _ = run(capsys, *local, "revoke-key", project["project_id"], issued["key_id"])
    assert code == 0
    assert api.call("GET", "/v1/sessions", key=issued["api_key"]).status == 401
    assert run(capsys, *local, "revoke-key", project["project_id"], "000000000000")[0] == 1
    assert run(capsys, *local, "issue-key", "prj_01jc0000000000000000000000")[0] == 1
