"""README.md's "Use it from an agent" section, run as written against the running dev stack, so that it
cannot rot: its shell block goes to bash (with `API` and `KEY` set by the walkthrough's own lines, in a
directory whose .devstack/endpoints.json is this dev stack's), then its Python block to the `mcp` 2.x
client environment (.tools/mcp2) in that shell, which exported `API`, `SID` and `TOKEN` as the README says.

What each command prints is checked against the README: a command's trailing comment (after two or more
spaces) shows its output from the first `{`, with `...` standing for anything. The output, re-serialised
with JSON's usual `, ` and `: ` separators, must start with the part before the first `...`, end with the
part after the last, and hold the parts in between in order."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_contract import call

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MCP2_PYTHON = ROOT / ".tools/mcp2/bin/python"
MARKER = "@@@README"
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")
TRAILING_COMMENT = re.compile(r"\s{2,}#\s+(.*)$")


def section(title: str) -> str:
    """The README's lines under `### title`, up to the next heading (outside code blocks) of any level."""
    lines = README.read_text().splitlines()
    start = lines.index(f"### {title}") + 1
    fenced = False
    for end in range(start, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(r"#{1,3} ", lines[end]):
            break
    else:
        end = len(lines)
    return "\n".join(lines[start:end]) + "\n"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def is_complete(chunk: str) -> bool:
    return subprocess.run(["bash", "-n"], input=chunk, capture_output=True, text=True).returncode == 0


def commands(block: str) -> Iterator[str]:
    """The block's commands, each with its continuation lines, multi-line quotes and here-document; blank
    lines and comment-only lines are skipped."""
    chunk: list[str] = []
    delimiter = None
    for line in block.splitlines():
        chunk.append(line)
        if delimiter is not None:
            if line.strip() == delimiter:
                delimiter = None
            else:
                continue
        elif opened := HEREDOC.search(line.split("  #")[0]):
            delimiter = opened.group(1)
            continue
        if line.rstrip().endswith("\\"):
            continue
        text = "\n".join(chunk)
        if all(not part.strip() or part.lstrip().startswith("#") for part in chunk):
            chunk = []
            continue
        if is_complete(text):
            yield text
            chunk = []
    assert not "".join(chunk).strip(), f"an incomplete command at the end of the block: {chunk}"


def claimed_output(command: str) -> str | None:
    """What the command's trailing comment says it prints (from the first `{`), if it says."""
    for line in command.splitlines():
        comment = TRAILING_COMMENT.search(line)
        if comment and "{" in comment.group(1):
            return comment.group(1)[comment.group(1).index("{") :]
    return None


def matches(claim: str, output: str) -> bool:
    printed = json.dumps(json.loads(output), ensure_ascii=False)
    pattern = ".*".join(re.escape(part) for part in claim.split("..."))
    return re.fullmatch(pattern, printed, flags=re.DOTALL) is not None


def test_the_agent_section_runs_as_written(devstack: dict, tmp_path: Path) -> None:
    if not MCP2_PYTHON.exists():
        pytest.fail(
            f"{MCP2_PYTHON} is missing: `make test` (or `make e2e`) creates the MCP client environments"
        )
    walkthrough = blocks(section("A walkthrough with curl"), "bash")[0]
    setup = [line for line in walkthrough.splitlines() if line.startswith(("API=", "KEY="))]
    assert len(setup) == 2, walkthrough
    agent = section("Use it from an agent")
    [shell] = blocks(agent, "bash")
    [python] = blocks(agent, "python")
    steps = list(commands(shell))
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack/endpoints.json").write_text(json.dumps(devstack))
    (tmp_path / "client.py").write_text(python)

    script = ["set -euo pipefail", *setup]
    for number, step in enumerate(steps):
        script += [f"printf '\\n{MARKER} {number}\\n'", step]
    script += [
        f"printf '\\n{MARKER} python\\n'",
        f"{MCP2_PYTHON} client.py",
        f"printf '\\n{MARKER} sid\\n%s' $SID",
    ]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parts = re.split(rf"\n{MARKER} (\S+)\n", done.stdout)
    printed = dict(zip(parts[1::2], parts[2::2], strict=True))
    try:
        checked = 0
        for number, step in enumerate(steps):
            output = printed[str(number)]
            claim = claimed_output(step)
            if claim is None:
                assert not output.strip(), f"{step}\nprints, but the README does not show what:\n{output}"
                continue
            assert matches(claim, output), f"{step}\nprinted:\n{output}"
            checked += 1
        assert checked == 4  # the PUT, the ranked search, the call and the MCP tools/list

        # The Python client prints the names and `uname -a`, as the prose after it says.
        names_shown = re.search(r"\(`(\[.*?\])`\)", agent, flags=re.DOTALL)
        assert names_shown is not None
        names, uname = printed["python"].strip().splitlines()
        assert set(ast.literal_eval(names_shown.group(1))) <= set(ast.literal_eval(names))
        assert "(`Linux ...`)" in agent and uname.startswith("Linux ")
    finally:
        key = devstack["projects"][0]["api_key"]
        assert call(devstack, "DELETE", f"/v1/sessions/{printed['sid']}", key)[0] == 200
