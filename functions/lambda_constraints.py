"""The Lambda build's versions: those of the test environment, one list for the tests and the Lambdas.

`.venv/bin/python functions/lambda_constraints.py` prints a pip constraints file: every exact pin
of pyproject.toml (extras dropped: pip refuses extras in constraints), then, for packages
pyproject.toml does not pin (dependencies of dependencies, e.g. python-dateutil under pandas), the
version installed in the interpreter that runs it: the project's .venv, where the tests run. The
functions' requirements.txt name their packages without versions; these constraints decide them.
`--default-architecture` prints the template's LambdaArchitecture default (functions/Makefile).
Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation (dist-info directories use '_', requirements may use '-' or '.')."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """{normalised name: version} of every exact pin, runtime and optional dependencies alike."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for group in (project.get("optional-dependencies") or {}).values():
        requirements += group
    found = {}
    for requirement in requirements:
        match = _PIN.match(requirement)
        if match:
            found[normalise(match.group(1))] = match.group(2)
    return found


def installed() -> dict[str, str]:
    """{normalised name: version} of the distributions of the running interpreter."""
    return {normalise(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def constraints() -> dict[str, str]:
    """pyproject.toml's pins over the running environment's versions."""
    return {**installed(), **pins()}


def default_architecture(template: Path = ROOT / "template.yaml") -> str:
    """Parameters.LambdaArchitecture.Default, read as text (no YAML library needed here)."""
    block = re.search(r"^  LambdaArchitecture:\n((?:    .*\n)+)", template.read_text(), re.MULTILINE)
    default = block and re.search(r"^    Default:\s*(\S+)\s*$", block.group(1), re.MULTILINE)
    if not default:
        raise SystemExit("template.yaml: no Parameters.LambdaArchitecture.Default")
    return default.group(1).strip("\"'")


def main(argv: list[str]) -> int:
    if argv == ["--default-architecture"]:
        print(default_architecture())
    elif not argv:
        print("\n".join(f"{name}=={version}" for name, version in sorted(constraints().items())))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
