"""The lists in the docs that mirror template.yaml, generated from it so that they cannot drift.

    python scripts/docs_lists.py          # `make docs`: rewrite the generated blocks
    python scripts/docs_lists.py --check  # fail if a block differs from what the template gives

A generated block sits between `<!-- generated: NAME -->` and `<!-- /generated -->` in a Markdown file.
tests/unit/test_docs_lists.py runs the check, and also holds the lists that stay hand-written (the
environment variables, the local overrides, endpoints.json's keys) against the code.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from layers import load_template  # noqa: E402

BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = re.match(r"(.+?[.:;])(\s|$)", text)
    return (match.group(1) if match else text).rstrip(".:;")


def parameters(template: dict[str, Any]) -> str:
    rows = ["| Parameter | Default | What it sets |", "|---|---|---|"]
    for name, spec in template["Parameters"].items():
        default = spec.get("Default")
        shown = "(empty)" if default == "" else f"`{default}`"
        rows.append(f"| `{name}` | {shown} | {first_sentence(spec.get('Description', ''))} |")
    return "\n".join(rows) + "\n"


def resources(template: dict[str, Any]) -> str:
    by_type: dict[str, list[str]] = defaultdict(list)
    for logical_id, resource in template["Resources"].items():
        by_type[resource["Type"]].append(logical_id)
    rows = ["| Type | Logical ids |", "|---|---|"]
    for kind in sorted(by_type):
        ids = by_type[kind]
        shown = ", ".join(ids) if len(ids) <= 12 else f"{len(ids)}: {ids[0]}, {ids[1]}, ..., {ids[-1]}"
        rows.append(f"| {kind} | {shown} |")
    return "\n".join(rows) + "\n"


GENERATORS: dict[str, Callable[[dict[str, Any]], str]] = {"parameters": parameters, "resources": resources}
FILES = [ROOT / "README.md"]


def render(text: str, template: dict[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        body = GENERATORS[match.group("name")](template)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    template = load_template()
    stale = []
    for path in FILES:
        text = path.read_text()
        rendered = render(text, template)
        if rendered != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(rendered)
    if args.check and stale:
        print(f"generated lists differ from template.yaml in {stale}: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
