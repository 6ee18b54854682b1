# ruff: noqa: S603 - runs pip and python with arguments built here
"""The Lambda layers from ONE lock: resolve it, build each layer from it, and check what every function gets.

    python scripts/layers.py lock [--check]     # layers/constraints.txt from all layers' requirements
    python scripts/layers.py build LAYER_DIR OUT  # LAYER_DIR's closure, pinned by the lock, into OUT/python
    python scripts/layers.py check [--build-dir .aws-sam/build]

The versions and their hashes come from uv.lock, the lock the development environment is installed from
(`make lock`), so the layers and the tests agree by construction: `lock` resolves the layers for the Lambda
platform with uv.lock's versions as constraints, `lock --check` fails when layers/constraints.txt is not
what that gives today, and `build` installs with pip's --require-hashes, each wheel checked against the
hashes uv.lock recorded.

Every layer is resolved against the same constraints (layers/constraints.txt + layers/runtime.txt), so two
layers can never ship two versions of one distribution. What the Lambda runtime already has (boto3, botocore
and their dependencies: layers/runtime.txt) is resolved against but never installed: `build` installs the
layer's closure with --no-deps, minus those. Wheels only, for the functions' platform (python3.13, arm64,
glibc 2.34: the manylinux tags SAM's own python builder accepts), so it builds the same on any machine
without a container and without a python3.13 interpreter.

`check` reads the layers `sam build` made (BUILD_DIR/<LayerId>/python) or, without a build, builds them into
a temporary folder, then for every function of template.yaml merges its layers (Globals + its own) with the
runtime's set and fails unless each distribution has exactly one version, no layer bundles a runtime
package, and every requirement of every distribution is met for the Lambda platform (pip check's rule; the
real `pip check` runs too when a python3.13 interpreter is at hand). It prints each layer's unzipped size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "layers"
LOCK = LAYERS / "constraints.txt"
UV_LOCK = ROOT / "uv.lock"
RUNTIME = LAYERS / "runtime.txt"
TEMPLATE = ROOT / "template.yaml"

PYTHON_VERSION = "3.13"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
# The environment markers of the Lambda python3.13 arm64 runtime, for evaluating requirements.
MARKERS = {
    "implementation_name": "cpython",
    "implementation_version": "3.13.0",
    "os_name": "posix",
    "platform_machine": "aarch64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.13.0",
    "python_version": "3.13",
    "sys_platform": "linux",
    "extra": "",
}
FORBIDDEN = ("boto3", "botocore")  # the brief's hard line; every runtime package is refused as well


class LayerError(RuntimeError):
    """The lock, a layer or a function's merged layers are not what they must be; the message says why."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """name -> version of the `name==version` lines of a requirements/constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise LayerError(f"{path.name}: {line!r} is not pinned (name==version)")
        pins[canonical(name.split("[", 1)[0])] = version.strip()
    return pins


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def _target_options() -> list[str]:
    options = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def resolve(requirement_files: Iterable[Path], constraint_files: Iterable[Path]) -> dict[str, str]:
    """pip's resolution for the Lambda platform: canonical name -> version (nothing is installed)."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [*_pip(), "install", "--dry-run", "--quiet", "--report", "-", "--target", scratch]
        command += _target_options()
        for path in requirement_files:
            command += ["-r", str(path)]
        for path in constraint_files:
            command += ["-c", str(path)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise LayerError(f"pip could not resolve the layers:\n{done.stderr.strip()}")
    report = json.loads(done.stdout)
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


# --- lock ---------------------------------------------------------------------------------------------


def dependency_layers() -> list[Path]:
    """The layer folders with third-party requirements (the core layer ships our own package only)."""
    return sorted(path.parent for path in LAYERS.glob("*/requirements.txt"))


def tested_versions() -> dict[str, str]:
    """The distributions of the environment running this (the tests' .venv, installed from uv.lock)."""
    from importlib import metadata

    return {canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def uv_locked() -> dict[str, tuple[str, tuple[str, ...]]]:
    """uv.lock's registry packages: canonical name -> (version, the sha256 hashes of its wheels and sdist).

    uv.lock is universal: a package resolved to two versions for two Python versions (networkx, for a dev
    tool) is left out, so the layers' pins never come from a guess; a layer that ships one fails to build
    (`build` finds no hash for it), which has not happened."""
    import tomllib

    packages: dict[str, tuple[str, tuple[str, ...]]] = {}
    forked = set()
    for package in tomllib.loads(UV_LOCK.read_text())["package"]:
        if "registry" not in package.get("source", {}):
            continue  # our own project (editable)
        name = canonical(package["name"])
        if name in packages and packages[name][0] != package["version"]:
            forked.add(name)
        artifacts = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        packages[name] = (package["version"], tuple(a["hash"].removeprefix("sha256:") for a in artifacts))
    return {name: pinned for name, pinned in packages.items() if name not in forked}


def locked_constraints() -> str:
    """What layers/constraints.txt must hold: all layers resolved at once for the Lambda platform, at
    uv.lock's versions (constraints), with the runtime's packages pinned to runtime.txt."""
    runtime = read_pins(RUNTIME)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as tested:
        tested.write("".join(f"{n}=={v}\n" for n, (v, _) in uv_locked().items() if n not in runtime))
        tested.flush()
        resolved = resolve(
            [layer / "requirements.txt" for layer in dependency_layers()], [RUNTIME, Path(tested.name)]
        )
    shipped = {name: version for name, version in sorted(resolved.items()) if name not in runtime}
    header = [
        "# GENERATED by `make lock` (scripts/layers.py lock): every distribution a layer may ship,",
        "# resolved ONCE for all layers (layers/*/requirements.txt) against what the Lambda runtime provides",
        "# (runtime.txt), for python3.13 on arm64, at the versions of uv.lock (the tests' lock; its hashes",
        "# check every wheel a layer installs). Each layer installs exactly these versions (--no-deps), so",
        "# layers agree. `make lock` after changing a layer's requirements.txt (`make lint` checks).",
    ]
    return "\n".join([*header, *(f"{n}=={v}" for n, v in shipped.items())]) + "\n"


def lock(*, check: bool = False) -> dict[str, str]:
    """Write layers/constraints.txt (or, with `check`, fail unless it already holds exactly that)."""
    text = locked_constraints()
    if check:
        if LOCK.read_text() != text:
            raise LayerError(
                "layers/constraints.txt is stale against uv.lock or the layers' requirements: "
                "run `make lock` and commit it"
            )
    else:
        LOCK.write_text(text)
    return read_pins(LOCK)


# --- build --------------------------------------------------------------------------------------------


def closure(layer: Path) -> dict[str, str]:
    """What the layer ships: its requirements' closure under the lock, minus the runtime's packages."""
    runtime, locked = read_pins(RUNTIME), read_pins(LOCK)
    resolved = resolve([layer / "requirements.txt"], [LOCK, RUNTIME])
    shipped = {name: version for name, version in resolved.items() if name not in runtime}
    stale = sorted(f"{n}=={v}" for n, v in shipped.items() if locked.get(n) != v)
    if stale:
        raise LayerError(
            f"{layer.name}: {', '.join(stale)} not in layers/constraints.txt; run `make lock` and commit it"
        )
    return shipped


def build(layer: Path, out: Path, *, bytecode: bool = True) -> Path:
    """Install the layer's pinned closure into OUT/python (the folder Lambda mounts as /opt/python), with
    python3.13 bytecode when `bytecode` (see `compile_bytecode`)."""
    target = out / "python"
    pins, hashes = closure(layer), uv_locked()
    unhashed = sorted(f"{n}=={v}" for n, v in pins.items() if hashes.get(n, ("",))[0] != v)
    if unhashed:
        raise LayerError(
            f"{layer.name}: {', '.join(unhashed)} not in uv.lock at that version: run `make lock`"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write(
            "".join(
                f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes[name][1]) + "\n"
                for name, version in sorted(pins.items())
            )
        )
        requirements.flush()
        # --no-compile: pip would compile for the interpreter running it, whose .pyc Lambda's 3.13 ignores.
        command = [*_pip(), "install", "--quiet", "--no-deps", "--no-compile", "--require-hashes"]
        command += ["--target", str(target), *_target_options(), "-r", requirements.name]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise LayerError(f"pip could not install the {layer.name} layer:\n{done.stderr.strip()}")
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing on Lambda runs them
    for suite in target.glob("*/tests"):  # packages' own test suites: nothing imports them at run time
        if suite.is_dir() and (suite.parent / "__init__.py").is_file():
            shutil.rmtree(suite)
    if bytecode:
        compile_bytecode(target, layer.name)
    return target


def compile_bytecode(target: Path, name: str) -> bool:
    """Compile every module with a python3.13, as unchecked-hash .pyc files.

    Lambda's /opt is read-only: a layer without bytecode for the runtime's Python compiles every module it
    imports on every cold start, and cannot keep the result (about 200 ms of CPU more per cold start for
    the dependency layer, bench/run.py p1). Unchecked-hash: the .pyc is used without comparing the source's
    mtime, which a zip's round trip does not keep exactly. Without a python3.13 here the layer still works,
    only slower to start; the build says so and `check` reports it (P5 in `make bench` fails).
    """
    interpreter = python313()
    if interpreter is None:
        print(
            f"warning: no python3.13 here: the {name} layer ships no bytecode, and every cold start will "
            "compile what it imports (install python 3.13, e.g. with pyenv, and build again)",
            file=sys.stderr,
        )
        return False
    command = [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    done = subprocess.run([*command, str(target)], capture_output=True, text=True, check=False)
    if (
        done.returncode
    ):  # a module that is not python3.13 syntax (tests, templates): its import would fail too
        print(f"warning: compileall on the {name} layer: {done.stdout.strip()[-500:]}", file=sys.stderr)
    return True


def bytecode_share(folder: Path) -> float:
    """The share of the folder's .py files that have python3.13 bytecode beside them."""
    sources = [path for path in folder.rglob("*.py") if "__pycache__" not in path.parts]
    if not sources:
        return 1.0
    compiled = sum(
        1 for path in sources if (path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc").is_file()
    )
    return compiled / len(sources)


# --- check --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    name: str  # canonical
    version: str
    requires: tuple[str, ...]
    where: str


def distributions(folder: Path, where: str) -> list[Dist]:
    found = []
    for info in sorted(folder.glob("*.dist-info")):
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        found.append(
            Dist(
                canonical(metadata["Name"]),
                metadata["Version"],
                tuple(metadata.get_all("Requires-Dist") or ()),
                where,
            )
        )
    return found


def unmet(dists: Iterable[Dist]) -> list[str]:
    """pip check's rule (a requirement whose marker holds must be present in a matching version), with the
    markers evaluated for the Lambda platform instead of the interpreter running this."""
    from packaging.requirements import Requirement

    present = {dist.name: dist for dist in dists}
    problems = []
    for dist in present.values():
        for line in dist.requires:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(MARKERS):
                continue  # extras and other platforms' requirements (pip check skips them too)
            other = present.get(canonical(requirement.name))
            if other is None:
                problems.append(f"{dist.name} {dist.version} requires {requirement}, which is missing")
            elif not requirement.specifier.contains(other.version, prereleases=True):
                problems.append(
                    f"{dist.name} {dist.version} requires {requirement}, "
                    f"but {other.name} {other.version} is there ({other.where})"
                )
    return problems


@dataclass
class Report:
    sizes: dict[str, int] = field(default_factory=dict)
    bytecode: dict[str, float] = field(default_factory=dict)  # layer -> share of .py with 3.13 .pyc
    functions: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    pip_check: str = ""


def merge(function: str, layers: list[tuple[str, Path]], runtime: list[Dist]) -> list[str]:
    """Problems of one function's /opt/python (its layers, in order) over the runtime's packages."""
    problems, merged = [], {}
    runtime_names = {dist.name for dist in runtime}
    for layer_id, folder in layers:
        for dist in distributions(folder, layer_id):
            if dist.name in FORBIDDEN or dist.name in runtime_names:
                problems.append(
                    f"{layer_id} bundles {dist.name} {dist.version}, which the Lambda runtime provides "
                    "(a layer's copy shadows it)"
                )
            seen = merged.get(dist.name)
            if seen is not None and seen.version != dist.version:
                problems.append(
                    f"{function}: {dist.name} {seen.version} ({seen.where}) and {dist.version} ({layer_id})"
                )
            merged.setdefault(dist.name, dist)
    for dist in runtime:
        merged.setdefault(dist.name, dist)
    return problems + [f"{function}: {problem}" for problem in unmet(merged.values())]


def stale(folders: dict[str, Path]) -> list[str]:
    """Built distributions that the lock does not pin at that version (a build older than the lock)."""
    locked = read_pins(LOCK)
    return [
        f"{layer_id} has {dist.name} {dist.version} but layers/constraints.txt pins {locked.get(dist.name)}: "
        "rebuild (make build)"
        for layer_id, folder in folders.items()
        for dist in distributions(folder, layer_id)
        if locked.get(dist.name) != dist.version
    ]


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: Loader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", tagged)
    return dict(yaml.load(path.read_text(), Loader=Loader))  # noqa: S506 - a SafeLoader subclass


def layer_refs(entry: Any) -> list[str]:
    """The layer logical ids an entry of a Layers list may stand for: `!Ref X`, or both branches of an
    `!If [condition, !Ref X, !Ref AWS::NoValue]` (the check covers the stack with the condition true: the
    other stack's set is a subset)."""
    if not isinstance(entry, dict):
        return []
    if "Ref" in entry:
        return [] if entry["Ref"] == "AWS::NoValue" else [entry["Ref"]]
    branches = entry.get("Fn::If")
    if isinstance(branches, list) and len(branches) == 3:
        return layer_refs(branches[1]) + layer_refs(branches[2])
    return []


def function_layers(template: dict[str, Any]) -> dict[str, list[str]]:
    """Function logical id -> its layers' logical ids, in order (Globals first; SAM appends)."""
    globals_layers = ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    functions = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        own = (resource.get("Properties") or {}).get("Layers") or []
        functions[logical_id] = [ref for entry in [*globals_layers, *own] for ref in layer_refs(entry)]
    return functions


def layer_sources(template: dict[str, Any]) -> dict[str, Path]:
    return {
        logical_id: ROOT / resource["Properties"]["ContentUri"]
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    }


def built_layers(
    template: dict[str, Any], build_dir: Path | None, scratch: Path, *, bytecode: bool = False
) -> dict[str, Path]:
    """Layer logical id -> its /opt/python folder: from `sam build` if it built them, else built here."""
    folders = {}
    for layer_id, source in layer_sources(template).items():
        built = build_dir / layer_id / "python" if build_dir else None
        if built is not None and built.is_dir():
            folders[layer_id] = built
        elif (source / "requirements.txt").is_file():
            folders[layer_id] = build(source, scratch / layer_id, bytecode=bytecode)
        else:
            folders[layer_id] = source  # our own package, shipped as it is
    return folders


def runtime_tree(scratch: Path) -> Path:
    target = scratch / "runtime"
    command = [*_pip(), "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target)]
    command += [*_target_options(), "-r", str(RUNTIME)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise LayerError(f"pip could not install the runtime's packages:\n{done.stderr.strip()}")
    return target


def python313() -> str | None:
    """A python3.13 interpreter for the real `pip check`, if this machine has one (PATH or pyenv)."""
    candidates = [shutil.which("python3.13")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in Path(pyenv_root).glob("versions/3.13*/bin/python3.13"))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def real_pip_check(folders: list[Path], scratch: Path) -> str:
    """`pip check` run by a python3.13 over exactly these folders (a bare venv that sees only them)."""
    interpreter = python313()
    if interpreter is None:
        return "skipped (no python3.13 here; the rule above is pip check's, for the Lambda platform)"
    venv = scratch / f"venv{len(list(scratch.glob('venv*')))}"
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3.13/site-packages"))
    (site / "layers.pth").write_text("".join(f"{folder}\n" for folder in folders))
    done = subprocess.run(
        [*_pip(), "--python", str(venv / "bin" / "python"), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode:
        raise LayerError(f"pip check failed on {[str(f) for f in folders]}:\n{output}")
    return output


def check(build_dir: Path | None, *, bytecode: bool = False) -> Report:
    """`bytecode`: when no build dir has the layers, build them with bytecode as `sam build` does (slower;
    the rules checked here do not depend on it, the sizes do)."""
    template = load_template()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="layers-") as tmp:
        scratch = Path(tmp)
        folders = built_layers(template, build_dir, scratch, bytecode=bytecode)
        runtime_folder = runtime_tree(scratch)
        runtime = distributions(runtime_folder, "runtime")
        report.sizes = {layer_id: folder_size(folder) for layer_id, folder in folders.items()}
        report.bytecode = {layer_id: bytecode_share(folder) for layer_id, folder in folders.items()}
        report.problems += stale(folders)
        combinations: dict[tuple[str, ...], list[str]] = {}
        for function, layer_ids in function_layers(template).items():
            report.functions[function] = layer_ids
            combinations.setdefault(tuple(layer_ids), []).append(function)
            report.problems += merge(function, [(i, folders[i]) for i in layer_ids], runtime)
        if not report.problems:
            outputs = [
                real_pip_check([folders[i] for i in combo] + [runtime_folder], scratch)
                for combo in combinations
            ]
            report.pip_check = "; ".join(sorted(set(outputs)))
    return report


def _print_report(report: Report, build_dir: Path | None) -> None:
    source = f"built by sam build ({build_dir})" if build_dir else "built here into a temporary folder"
    print(f"layers ({source}), unzipped:")
    for layer_id, size in report.sizes.items():
        share = report.bytecode.get(layer_id, 0.0)
        print(f"  {layer_id:<12} {size / 1e6:7.1f} MB  (python3.13 bytecode for {share:.0%} of its modules)")
    for combo in sorted({tuple(ids) for ids in report.functions.values()}):
        users = sorted(f for f, ids in report.functions.items() if tuple(ids) == combo)
        total = sum(report.sizes[i] for i in combo) / 1e6
        print(f"  {' + '.join(combo)} = {total:.1f} MB: {', '.join(users)}")
    if report.pip_check:
        print(f"pip check (python3.13 over each merged /opt/python + runtime): {report.pip_check}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    lock_parser = commands.add_parser("lock")
    lock_parser.add_argument("--check", action="store_true", help="fail unless the file is current")
    build_parser = commands.add_parser("build")
    build_parser.add_argument("layer", type=Path)
    build_parser.add_argument("out", type=Path)
    build_parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="skip compiling python3.13 bytecode (faster, slower starts)",
    )
    check_parser = commands.add_parser("check")
    check_parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    check_parser.add_argument(
        "--bytecode", action="store_true", help="without a build dir, build the layers with bytecode too"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            pins = lock(check=args.check)
            verb = "is current" if args.check else "written"
            print(f"{LOCK.relative_to(ROOT)} {verb}: {len(pins)} distributions")
        elif args.command == "build":
            target = build(args.layer.resolve(), args.out, bytecode=not args.no_bytecode)
            print(f"{args.layer.name}: {folder_size(target) / 1e6:.1f} MB unzipped in {target}")
        else:
            build_dir = args.build_dir if (args.build_dir / "template.yaml").is_file() else None
            report = check(build_dir, bytecode=args.bytecode)
            _print_report(report, build_dir)
            if report.problems:
                print("\n".join(["layer check FAILED:", *(f"  {p}" for p in report.problems)]))
                return 1
            print(f"layer check passed for {len(report.functions)} functions")
    except LayerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
