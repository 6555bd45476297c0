"""After `sam build`: the artifacts are what Lambda's python3.13 runs, with the tests' versions.

Why: the build installs wheels for another Python (3.13) and platform (Amazon Linux 2023 on the
template's LambdaArchitecture) than the machine's; a wrong flag or a missing wheel would still
"succeed" and fail at import time in AWS. For every function and layer this checks:
- the handler module is there (an absent CodeUri builds an empty function);
- every package of its requirements.txt is installed, at the version the tests run on
  (pyproject.toml's pin, functions/lambda_constraints.py), and every other installed package
  too (the test environment's version), so tests and Lambdas run the same libraries;
- every wheel is for CPython 3.13 on Linux and the architecture SAM built it for (its WHEEL
  tags), and every shared object is an ELF file of that architecture, with no other Python's
  extension modules;
- a function with its layers stays within Lambda's 250 MB unzipped limit;
- the common layer holds the API contract the Lambdas validate requests with (recsys_common/
  openapi.json), and it is docs/openapi.yaml as it is now.

Usage: .venv/bin/python .ci/check_build.py [BUILD_DIR]   (default .aws-sam/build); exit 1 on a gap.
The architecture is the one SAM records per function and layer in BUILD_DIR/../build.toml.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "functions"))

from lambda_constraints import constraints, normalise  # noqa: E402  (the build's own versions)
from openapi_json import render  # noqa: E402  (docs/openapi.yaml as the layer ships it)

from local.sam.template import load_yaml  # noqa: E402  (the repo's CloudFormation-aware YAML loader)

PYTHON_TAG = "cp313"  # python3.13 (template Globals.Function.Runtime)
# Amazon Linux 2023 ships glibc 2.34: manylinux_2_X wheels run when X <= 34 (PEP 600).
GLIBC = (2, 34)
# "Deployment package (.zip file archive) size: 250 MB (unzipped), including layers"
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
# ELF header e_machine (offset 18, little-endian) per Lambda architecture.
ELF_MACHINE = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_EXTENSION = re.compile(r"\.cpython-(\d+)-([\w-]+)\.so$")


@functools.cache
def template() -> dict:
    return load_yaml((ROOT / "template.yaml").read_text())


def requirement_names(requirements: Path) -> list[str]:
    names = []
    for line in requirements.read_text().splitlines():
        match = _REQUIREMENT.match(line.split("#", 1)[0])
        if match:
            names.append(normalise(match.group(1)))
    return names


def installed(artifact: Path) -> dict[str, tuple[str, Path]]:
    """{normalised name: (version, dist-info dir)} of the packages in a built artifact."""
    out = {}
    for info in artifact.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        out[normalise(name)] = (version, info)
    return out


def artifacts(build_dir: Path) -> list[tuple[str, Path, Path]]:
    """(logical id, source requirements.txt, built directory holding the packages)."""
    doc = template()
    result = []
    for logical_id, spec in doc["Resources"].items():
        props = spec.get("Properties") or {}
        if spec.get("Type") == "AWS::Serverless::Function":
            source, built = props.get("CodeUri"), build_dir / logical_id
        elif spec.get("Type") == "AWS::Serverless::LayerVersion":
            source, built = props.get("ContentUri"), build_dir / logical_id / "python"
        else:
            continue
        if isinstance(source, str) and (ROOT / source / "requirements.txt").is_file():
            result.append((logical_id, ROOT / source / "requirements.txt", built))
    return result


def built_architectures(build_dir: Path) -> dict[str, str]:
    """{logical id: architecture} as SAM recorded it for this build (build.toml beside the build dir)."""
    record = build_dir.parent / "build.toml"
    if not record.is_file():
        return {}
    data = tomllib.loads(record.read_text())
    out = {}
    for definition in (data.get("function_build_definitions") or {}).values():
        for name in definition.get("functions", []):
            out[name] = definition.get("architecture", "x86_64")
    for definition in (data.get("layer_build_definitions") or {}).values():
        out[definition["layer"]] = definition.get("architecture", "x86_64")
    return out


def missing_handlers(build_dir: Path) -> list[str]:
    """Functions whose built artifact lacks the handler module (CodeUri absent: SAM builds it empty)."""
    doc = template()
    handler_default = (doc.get("Globals") or {}).get("Function", {}).get("Handler", "app.lambda_handler")
    gaps = []
    for logical_id, spec in doc["Resources"].items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        module = (spec.get("Properties") or {}).get("Handler", handler_default).rpartition(".")[0]
        if not (build_dir / logical_id / f"{module.replace('.', '/')}.py").is_file():
            gaps.append(f"{logical_id}: no {module}.py in the build (does its CodeUri exist?)")
    return gaps


def version_gaps(requirements: Path, built: Path, expected: dict[str, str]) -> Iterator[str]:
    have = installed(built)
    for name in requirement_names(requirements):
        if name not in have:
            yield f"{name} is not installed (no {PYTHON_TAG} wheel for the platform?)"
        elif name not in expected:
            yield f"{name} has no version in pyproject.toml or .venv: pin it in pyproject.toml"
    for name, (version, _) in sorted(have.items()):
        if name in expected and version != expected[name]:
            yield f"{name}=={version}, but the tests run {name}=={expected[name]}"


def tag_compatible(tag: str, architecture: str) -> bool:
    """A wheel tag (python-abi-platform) that Lambda's python3.13 on `architecture` can load."""
    python, abi, platform = tag.split("-")
    if python not in ("py3", PYTHON_TAG) and not (python.startswith("cp3") and abi == "abi3"):
        return False
    if abi not in ("none", "abi3", PYTHON_TAG):
        return False
    if platform == "any":
        return True
    match = _MANYLINUX.match(platform)
    if match:
        glibc, arch = (int(match.group(1)), int(match.group(2))), match.group(3)
    else:
        legacy, _, arch = platform.partition("_")
        if legacy not in _LEGACY_MANYLINUX:
            return False
        glibc = _LEGACY_MANYLINUX[legacy]
    return arch == WHEEL_ARCH[architecture] and glibc <= GLIBC


def platform_gaps(built: Path, architecture: str) -> Iterator[str]:
    for name, (version, info) in sorted(installed(built).items()):
        wheel = info / "WHEEL"
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")] if wheel.is_file() else []  # fmt: skip
        if not any(tag_compatible(tag, architecture) for tag in tags):
            yield f"{name}=={version} is built for {tags or 'an unknown platform'}, not {PYTHON_TAG} on {architecture}"
    foreign: dict[int, list[str]] = {}
    for path in sorted(built.rglob("*.so*")):
        if not path.is_file() or path.is_symlink():
            continue
        extension = _EXTENSION.search(path.name)
        if extension and extension.group(1) != PYTHON_TAG.removeprefix("cp"):
            yield f"{path.relative_to(built)} is an extension module of another Python"
        with path.open("rb") as f:
            header = f.read(20)
        if header[:4] == b"\x7fELF":  # (a *.so may also be a linker script)
            machine = int.from_bytes(header[18:20], "little")
            if machine != ELF_MACHINE[architecture]:
                foreign.setdefault(machine, []).append(str(path.relative_to(built)))
    for machine, paths in foreign.items():
        yield f"{len(paths)} shared objects are for ELF machine {machine}, not {architecture} (e.g. {paths[0]})"


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def size_gaps(build_dir: Path) -> Iterator[str]:
    doc = template()
    for logical_id, spec in doc["Resources"].items():
        if spec.get("Type") != "AWS::Serverless::Function" or not (build_dir / logical_id).is_dir():
            continue
        layers = [ref["Ref"] for ref in (spec.get("Properties") or {}).get("Layers", []) if isinstance(ref, dict) and "Ref" in ref]  # fmt: skip
        total = tree_bytes(build_dir / logical_id) + sum(tree_bytes(build_dir / layer) for layer in layers if (build_dir / layer).is_dir())  # fmt: skip
        if total > MAX_UNZIPPED_BYTES:
            yield f"{logical_id}: {total / 2**20:.0f} MB unzipped with its layers, over Lambda's 250 MB"


def contract_gaps(build_dir: Path) -> Iterator[str]:
    built = build_dir / "CommonLayer" / "python" / "recsys_common" / "openapi.json"
    if not built.is_file():
        yield "CommonLayer: no recsys_common/openapi.json (the API contract the Lambdas validate with)"
    elif json.loads(built.read_text(encoding="utf-8")) != json.loads(render()):
        yield "CommonLayer: recsys_common/openapi.json is not docs/openapi.yaml (a stale build?)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    build_dir = Path(args[0] if args else ROOT / ".aws-sam" / "build").resolve()
    architectures = built_architectures(build_dir)
    expected = constraints()
    problems = [f"MISSING {gap}" for gap in missing_handlers(build_dir)]
    if not architectures:
        problems.append(
            f"NO RECORD {build_dir.parent / 'build.toml'}: which architecture was built? (run sam build)"
        )
    for logical_id, requirements, built in artifacts(build_dir):
        architecture = architectures.get(logical_id, "")
        if architecture not in ELF_MACHINE:
            problems.append(f"{logical_id}: unknown build architecture {architecture!r}")
            continue
        gaps = [*version_gaps(requirements, built, expected), *platform_gaps(built, architecture)]
        problems += [f"{logical_id}: {gap}" for gap in gaps]
        print(
            f"{'ok  ' if not gaps else 'FAIL'} {logical_id:24} {architecture:7} {len(installed(built))} packages"
        )
    layer_archs = {architectures[n] for n in architectures if n.endswith("Layer")}
    if len(set(architectures.values())) > 1:
        problems.append(
            f"functions and layers built for different architectures: {architectures} {layer_archs}"
        )
    problems += list(size_gaps(build_dir))
    problems += list(contract_gaps(build_dir))
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"{len(problems)} problem(s) in the build. The Lambdas run python3.13 on Amazon Linux 2023 "
            "with the tests' library versions (README: Runtime; functions/Makefile)."
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
