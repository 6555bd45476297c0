"""After `sam build`: every pinned requirement of every function and layer is in its artifact.

Why: when no wheel fits the Lambda platform (python3.11 = Amazon Linux 2, manylinux2014),
SAM's pip builder can leave a package out and still report "Build Succeeded"; the function
then fails at import time in AWS. This compares each `requirements.txt` pin with the
`*.dist-info` directories of the built artifact.

Usage: python .ci/check_build.py [BUILD_DIR]   (default .aws-sam/build); exit 1 on a gap.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.template import load_yaml  # noqa: E402  (the repo's CloudFormation-aware YAML loader)

_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def pins(requirements: Path) -> list[tuple[str, str]]:
    found = []
    for line in requirements.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def installed(artifact: Path) -> set[tuple[str, str]]:
    out = set()
    for info in artifact.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        out.add((_normalise(name), version))
    return out


def artifacts(build_dir: Path) -> list[tuple[str, Path, Path]]:
    """(logical id, source requirements.txt, built directory holding the packages)."""
    doc = load_yaml((ROOT / "template.yaml").read_text())
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


def missing_handlers(build_dir: Path) -> list[str]:
    """Functions whose built artifact lacks the handler module (CodeUri absent: SAM builds it empty)."""
    doc = load_yaml((ROOT / "template.yaml").read_text())
    handler_default = (doc.get("Globals") or {}).get("Function", {}).get("Handler", "app.lambda_handler")
    gaps = []
    for logical_id, spec in doc["Resources"].items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        module = (spec.get("Properties") or {}).get("Handler", handler_default).rpartition(".")[0]
        if not (build_dir / logical_id / f"{module.replace('.', '/')}.py").is_file():
            gaps.append(f"{logical_id}: no {module}.py in the build (does its CodeUri exist?)")
    return gaps


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    build_dir = Path(args[0] if args else ROOT / ".aws-sam" / "build").resolve()
    gaps = missing_handlers(build_dir)
    for gap in gaps:
        print(f"MISSING {gap}")
    problems = len(gaps)
    for logical_id, requirements, built in artifacts(build_dir):
        have = installed(built)
        for name, version in pins(requirements):
            ok = (_normalise(name), version) in have
            problems += not ok
            print(f"{'ok     ' if ok else 'MISSING'} {logical_id:28} {name}=={version}")
    if problems:
        print(
            f"{problems} pinned package(s) missing from the build: no wheel for the Lambda platform? "
            "python3.11 runs on Amazon Linux 2 and needs manylinux2014 wheels (README: Runtime)."
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
