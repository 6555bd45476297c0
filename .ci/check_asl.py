"""Validate every state machine of template.yaml with asl-validator (npm; a tool that is not ours).

The definition validated is the one Step Functions receives: the ASL file with the template's
DefinitionSubstitutions applied (placeholder ARNs of the right shape, as the local stack
resolves them), so Resource ARNs and paths are checked as deployed. A statemachines/*.asl.json
that no state machine uses is validated as written (and reported: dead definitions drift).

Usage: .venv/bin/python .ci/check_asl.py   (needs `npm ci`: the Makefile's lint target runs it).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.sam import template as tmpl  # noqa: E402
from local.sam.provision import state_machine_definition  # noqa: E402

VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
STATE_MACHINES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


def definitions(template_path: Path) -> list[tuple[str, str]]:
    """(name, definition text) of every state machine, substituted; then unused ASL files."""
    t = tmpl.load(template_path)
    out, used = [], set()
    for r in t.of_type(*STATE_MACHINES):
        uri = r.properties.get("DefinitionUri")
        if isinstance(uri, str):
            used.add((t.root / uri).resolve())
        out.append((r.logical_id, state_machine_definition(t, r)))
    for path in sorted((t.root / "statemachines").glob("*.asl.json")):
        if path.resolve() not in used:
            out.append((f"{path.relative_to(t.root)} (used by no state machine)", path.read_text()))
    return out


def validate(name: str, text: str) -> tuple[bool, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".asl.json", delete=False) as f:
        f.write(text)
    try:
        run = subprocess.run(
            [str(VALIDATOR), "--json-path", f.name], capture_output=True, text=True, check=False
        )
    finally:
        Path(f.name).unlink()
    return run.returncode == 0, (run.stdout + run.stderr).replace(f.name, name).strip()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not VALIDATOR.exists():
        print(f"{VALIDATOR} missing: run `npm ci` (make lint does)")
        return 2
    failures = 0
    for name, text in definitions(Path(args[0]) if args else ROOT / "template.yaml"):
        ok, report = validate(name, text)
        failures += not ok
        print(report if not ok else f"asl-validator: {name} is valid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
