"""The security scan's suppressions (checkov, in make lint): each sits next to its resource in template.yaml
with a one-line reason, and docs/operations.md lists every suppressed check for the resources it names."""

from __future__ import annotations

import re
from pathlib import Path

from devstack.template import Template

OPERATIONS_MD = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def suppressions(template: Template) -> dict[str, list[dict[str, str]]]:
    found = {}
    for logical_id, resource in template.resources.items():
        skips = ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
        if skips:
            found[logical_id] = skips
    return found


def test_every_suppression_has_a_reason_and_is_listed_in_operations(template: Template) -> None:
    documented = OPERATIONS_MD.read_text()
    table = documented[documented.index("Suppressed, each next to its resource") :]
    rows = {match.group(1): match.group(0) for match in re.finditer(r"^\| (CKV_AWS_\d+) .*$", table, re.M)}
    found = suppressions(template)
    assert found, "no checkov suppressions found: has the Metadata format changed?"
    for logical_id, skips in found.items():
        for skip in skips:
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (logical_id, skip)
            reason = skip.get("comment", "")
            assert 10 < len(reason) <= 140 and "\n" not in reason, (logical_id, skip)
            assert skip["id"] in rows, f"{skip['id']} ({logical_id}) is not in docs/operations.md"


def test_reserved_concurrency_is_where_money_is_spent(template: Template) -> None:
    for name, parameter in [
        ("ExecuteFunction", "ComputeReservedConcurrency"),
        ("CallToolFunction", "ComputeReservedConcurrency"),
        ("McpFunction", "ComputeReservedConcurrency"),
        ("TeardownFunction", "TeardownReservedConcurrency"),
    ]:
        reserved = template.resources[name]["Properties"]["ReservedConcurrentExecutions"]
        assert {"Ref": parameter} in reserved["Fn::If"], name
        assert int(template.parameters[parameter]["Default"]) > 0, parameter
    maximum = template.resources["TeardownFunction"]["Properties"]["Events"]["Teardown"]["Properties"]
    teardown_floor = maximum["ScalingConfig"]["MaximumConcurrency"]
    assert int(template.parameters["TeardownReservedConcurrency"]["Default"]) >= teardown_floor
