"""Reads a deployed stack's outputs (table names) so the admin CLI can target it by name."""

from __future__ import annotations

import boto3


def stack_outputs(stack_name: str, region: str | None = None) -> dict[str, str]:
    client = boto3.client("cloudformation", region_name=region)
    stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}
