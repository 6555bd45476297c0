"""The repository's layout and the pieces the template and the README's commands rely on."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from local.sam.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]


def _template() -> dict:
    return load_yaml((ROOT / "template.yaml").read_text())


# local/'s parts and what each may import: the engine stands alone (it is Personalize, reached over
# the wire) but for IAM's decision (local.iam's plain-data modules, not the template reader), the
# tools are clients of a running stack's public interfaces (HTTP, boto3), the SAM emulation knows
# neither the tools nor the engine's internals, and IAM reads the template only through the resolver.
IAM_DECISION = {"local.iam.authorizer", "local.iam.actions", "local.iam.evaluate"}
LOCAL_LAYERS = {
    "personalize": {"local.personalize", "local.wsgi_server", *IAM_DECISION},
    "tools": {"local.tools"},
    "sam": {"local.sam", "local.moto_patches", "local.iam", "local.wsgi_server"},
    "moto_patches": {"local.moto_patches"},
    "iam": {"local.iam", "local.sam.template"},
    "wsgi_server": set(),  # the HTTP server base of the engine and the SAM emulation: a leaf
}


def test_iam_decision_modules_do_not_read_the_template():
    """The engine's process imports them: they must not pull in the SAM emulation."""
    for name in IAM_DECISION:
        path = ROOT / (name.replace(".", "/") + ".py")
        assert _local_imports(path) <= IAM_DECISION, f"{name} imports {_local_imports(path) - IAM_DECISION}"


def _local_imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "local" or name.startswith("local.")}


def test_local_parts_import_only_what_their_layer_allows():
    for part, allowed in LOCAL_LAYERS.items():
        module = ROOT / "local" / f"{part}.py"
        paths = [module] if module.is_file() else list((ROOT / "local" / part).rglob("*.py"))
        assert paths, f"local/{part} does not exist"
        for path in paths:
            for name in _local_imports(path):
                assert any(name == a or name.startswith(a + ".") for a in allowed), (
                    f"{path.relative_to(ROOT)} imports {name}"
                )


def test_every_function_and_layer_has_its_code():
    """A CodeUri without its handler module builds an empty artifact (sam build does not fail)."""
    doc = _template()
    for logical_id, spec in doc["Resources"].items():
        props = spec.get("Properties") or {}
        if spec["Type"] == "AWS::Serverless::Function":
            module = props["Handler"].rpartition(".")[0].replace(".", "/")
            assert (ROOT / props["CodeUri"] / f"{module}.py").is_file(), f"{logical_id}: {props['CodeUri']}"
        if spec["Type"] == "AWS::Serverless::LayerVersion":
            layer = ROOT / props["ContentUri"]
            assert (layer / "requirements.txt").is_file(), f"{logical_id}: no requirements.txt"
            assert any(p.is_dir() and (p / "__init__.py").is_file() for p in layer.iterdir()), logical_id


def test_serving_functions_stay_light():
    """Serving Lambdas import no pandas/numpy/scipy (cold start); their requirements agree."""
    heavy = re.compile(r"^\s*(?:import|from)\s+(pandas|numpy|scipy)\b", re.MULTILINE)
    for folder in ("recommendations", "events", "event_replay", "common"):
        for path in (ROOT / "functions" / folder).rglob("*.py"):
            assert not heavy.search(path.read_text()), f"{path.relative_to(ROOT)} imports a heavy library"
        requirements = ROOT / "functions" / folder / "requirements.txt"
        if requirements.is_file():
            assert not re.search(r"^(pandas|numpy|scipy)\b", requirements.read_text(), re.MULTILINE)


def test_samconfig_environments_match_the_template():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    allowed = _template()["Parameters"]["Environment"]["AllowedValues"]
    for env, expected in (("default", "dev"), ("staging", "staging"), ("prod", "prod")):
        deploy = config[env]["deploy"]["parameters"]
        assert f'Environment="{expected}"' in deploy["parameter_overrides"] and expected in allowed
        assert "CAPABILITY_IAM" in deploy["capabilities"]
        assert config[env]["global"]["parameters"]["stack_name"].endswith(expected)
        overrides = dict(re.findall(r'(\w+)="([^"]*)"', deploy["parameter_overrides"]))
        assert set(overrides) <= set(_template()["Parameters"]), f"{env}: unknown parameter"


def test_makefile_targets_and_ignores():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run:", "test:", "lint:", "build:", "validate:"):
        assert re.search(rf"^{target}", makefile, re.MULTILINE), target
    assert (
        "cfn-lint template.yaml" in makefile
        and "validate --lint" in makefile
        and "check_build.py" in makefile
    )
    # make test runs lint, and lint the tools that are not ours on the artefacts
    lint = re.search(r"^lint:.*?(?=^\S)", makefile, re.MULTILINE | re.DOTALL).group(0)
    for command in ("cfn-lint template.yaml", ".ci/check_asl.py", ".ci/check_iam.py"):
        assert command in lint, command
    assert re.search(r"^test: lint", makefile, re.MULTILINE)
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in (".venv/", ".venv-sam/", ".aws-sam/", "*.egg-info/", "node_modules/"):
        assert entry in ignored, entry
