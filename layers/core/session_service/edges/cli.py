"""`session-admin`: create projects, issue (print once), list and revoke API keys, set a project's limits.

Targets, in order of precedence:
  --stack NAME      a deployed stack (table names from its outputs; AWS credentials from your profile)
  --local           the running dev stack (`make dev` writes .devstack/endpoints.json; --endpoints FILE)
  (neither)         the environment: PROJECTS_TABLE, API_KEYS_TABLE, AWS_* as for the Lambda functions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from session_service.domain.errors import DomainError

LOCAL_ENDPOINTS = Path(".devstack/endpoints.json")


def _target_environment(args: argparse.Namespace) -> None:
    if args.stack:
        from session_service.runtime import stack_outputs

        outputs = stack_outputs(args.stack, args.region)
        os.environ["PROJECTS_TABLE"] = outputs["ProjectsTableName"]
        os.environ["API_KEYS_TABLE"] = outputs["ApiKeysTableName"]
        if args.region:
            os.environ["AWS_REGION"] = args.region
    elif args.local:
        endpoints = json.loads(Path(args.endpoints).read_text())
        os.environ["PROJECTS_TABLE"] = endpoints["tables"]["ProjectsTable"]
        os.environ["API_KEYS_TABLE"] = endpoints["tables"]["ApiKeysTable"]
        os.environ["AWS_ENDPOINT_URL"] = endpoints["aws_endpoint_url"]
        os.environ["AWS_REGION"] = endpoints["region"]
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    for name in ("PROJECTS_TABLE", "API_KEYS_TABLE"):
        if not os.environ.get(name):
            raise SystemExit(f"session-admin: no target: give --stack NAME or --local, or set {name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-admin", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--stack", help="name of a deployed stack")
    target.add_argument("--local", action="store_true", help="target the running dev stack")
    parser.add_argument("--endpoints", default=str(LOCAL_ENDPOINTS), help="the dev stack's endpoints.json")
    parser.add_argument("--region", help="AWS region of the stack (default: your profile's)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-project", help="create a project; prints its id")
    create.add_argument("name")
    issue = commands.add_parser("issue-key", help="issue an API key; it is printed once and never stored")
    issue.add_argument("project_id")
    listing = commands.add_parser("list-keys", help="list a project's keys (ids only)")
    listing.add_argument("project_id")
    limits = commands.add_parser(
        "set-limits",
        help="set a project's own rate limits (requests a minute per API key or session token); "
        "an option left out restores the stack's default",
    )
    limits.add_argument("project_id")
    limits.add_argument("--per-minute", type=int, help="every request (the general bucket)")
    limits.add_argument("--compute-per-minute", type=int, help="execute, tool calls, MCP tools/call")
    revoke = commands.add_parser("revoke-key", help="revoke a key by its id")
    revoke.add_argument("project_id")
    revoke.add_argument("key_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _target_environment(args)
    from session_service.runtime import admin_service

    admin = admin_service()
    try:
        if args.command == "create-project":
            project = admin.create_project(args.name)
            print(json.dumps({"project_id": project.project_id, "name": project.name}))
        elif args.command == "issue-key":
            issued = admin.issue_key(args.project_id)
            print(
                json.dumps(
                    {"project_id": issued.project_id, "key_id": issued.key_id, "api_key": issued.api_key}
                )
            )
            print("Store this key now: it is shown once and only its hash is kept.", file=sys.stderr)
        elif args.command == "list-keys":
            for record in admin.list_keys(args.project_id):
                print(
                    json.dumps(
                        {
                            "key_id": record.key_id,
                            "created_at": record.created_at,
                            "revoked_at": record.revoked_at,
                        }
                    )
                )
        elif args.command == "set-limits":
            project = admin.set_limits(args.project_id, args.per_minute, args.compute_per_minute)
            print(
                json.dumps(
                    {
                        "project_id": project.project_id,
                        "rate_limit_per_minute": project.rate_limit_per_minute,
                        "compute_rate_limit_per_minute": project.compute_rate_limit_per_minute,
                    }
                )
            )
        elif args.command == "revoke-key":
            admin.revoke_key(args.project_id, args.key_id)
            print(json.dumps({"key_id": args.key_id, "revoked": True}))
    except DomainError as error:
        print(f"session-admin: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
