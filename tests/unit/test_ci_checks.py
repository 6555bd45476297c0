"""The CI's own checks of the artefacts fail on broken artefacts, and pass on the real ones.

.ci/check_build.py (after `sam build`), .ci/check_iam.py (parliament on every IAM policy),
.ci/check_asl.py (asl-validator on the deployed definition) and functions/lambda_constraints.py
(the Lambda build's versions). The full `sam build` runs in `make validate`; here the build
checker reads small fake artifacts laid out as SAM lays them out.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import pytest

from local.sam.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".ci"))
sys.path.insert(0, str(ROOT / "functions"))

import check_asl  # noqa: E402
import check_build  # noqa: E402
import check_iam  # noqa: E402
import lambda_constraints  # noqa: E402

# --- the Lambda build's versions ------------------------------------------------------------


def test_constraints_are_the_test_environments_versions():
    pins = lambda_constraints.pins()
    assert {"pandas", "numpy", "scipy", "boto3", "aws-lambda-powertools"} <= set(pins)
    constraints = lambda_constraints.constraints()
    for name, version in pins.items():
        assert constraints[name] == version  # pyproject.toml decides what it pins
    # what it does not pin (dependencies of dependencies) is what the tests import
    assert constraints["python-dateutil"] == importlib.metadata.version("python-dateutil")
    for name in ("pandas", "numpy", "scipy"):
        assert importlib.metadata.version(name) == pins[name], f"{name}: .venv is not pyproject.toml"


def test_function_requirements_carry_no_versions_of_their_own():
    """One list of versions: a pin in a requirements.txt would be a second one."""
    for requirements in (ROOT / "functions").glob("*/requirements.txt"):
        for line in requirements.read_text().splitlines():
            code = line.split("#", 1)[0].strip()
            assert not any(op in code for op in "=<>~!"), f"{requirements}: {line!r}"


def test_default_architecture_is_the_templates():
    doc = load_yaml((ROOT / "template.yaml").read_text())
    assert lambda_constraints.default_architecture() == doc["Parameters"]["LambdaArchitecture"]["Default"]


# --- .ci/check_build.py ----------------------------------------------------------------------

ELF_AARCH64, ELF_X86_64 = 183, 62


def _elf(machine: int) -> bytes:
    return b"\x7fELF" + bytes(14) + machine.to_bytes(2, "little") + bytes(44)


def _dist(target: Path, name: str, version: str, tags: list[str]) -> None:
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "WHEEL").write_text("Wheel-Version: 1.0\n" + "".join(f"Tag: {t}\n" for t in tags))


def fake_build(tmp_path: Path, architecture: str = "arm64", machine: int = ELF_AARCH64) -> Path:
    """A build dir as `sam build` + functions/Makefile leave it, with the tests' versions."""
    build = tmp_path / ".aws-sam" / "build"
    doc = load_yaml((ROOT / "template.yaml").read_text())
    versions = lambda_constraints.constraints()
    arch = {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
    record = ["[function_build_definitions.f]", f'architecture = "{architecture}"', "functions = ["]
    for _logical_id, requirements, built in check_build.artifacts(build):
        built.mkdir(parents=True, exist_ok=True)
        for name in check_build.requirement_names(requirements):
            compiled = name in ("numpy", "scipy", "pandas")
            tags = [f"cp313-cp313-manylinux_2_28_{arch}"] if compiled else ["py3-none-any"]
            _dist(built, name, versions[name], tags)
            if compiled:
                (built / name).mkdir()
                (built / name / f"_core.cpython-313-{arch}-linux-gnu.so").write_bytes(_elf(machine))
    for logical_id, spec in doc["Resources"].items():
        if spec["Type"] == "AWS::Serverless::Function":
            (build / logical_id).mkdir(parents=True, exist_ok=True)
            (build / logical_id / "app.py").write_text("def lambda_handler(event, context): ...\n")
            record.append(f'"{logical_id}",')
    contract = build / "CommonLayer" / "python" / "recsys_common" / "openapi.json"
    contract.parent.mkdir(parents=True, exist_ok=True)
    contract.write_text(check_build.render())
    record += [
        "]",
        "[layer_build_definitions.l]",
        'layer = "CommonLayer"',
        f'architecture = "{architecture}"',
    ]
    (build.parent / "build.toml").write_text("\n".join(record) + "\n")
    return build


def test_check_build_passes_a_right_build(tmp_path, capsys):
    assert check_build.main([str(fake_build(tmp_path))]) == 0, capsys.readouterr().out
    assert check_build.main([str(fake_build(tmp_path / "x", "x86_64", ELF_X86_64))]) == 0


def test_check_build_refuses_machine_code_of_another_architecture(tmp_path, capsys):
    """`sam build --parameter-overrides LambdaArchitecture=x86_64` without LAMBDA_ARCHITECTURE:
    SAM records x86_64, the wheels are aarch64."""
    build = fake_build(tmp_path, "arm64", ELF_AARCH64)
    record = build.parent / "build.toml"
    record.write_text(record.read_text().replace('"arm64"', '"x86_64"'))
    assert check_build.main([str(build)]) == 1
    out = capsys.readouterr().out
    assert "numpy==2.4.6 is built for ['cp313-cp313-manylinux_2_28_aarch64'], not cp313 on x86_64" in out
    assert "shared objects are for ELF machine 183, not x86_64" in out


def test_check_build_refuses_versions_the_tests_do_not_run(tmp_path, capsys):
    build = fake_build(tmp_path)
    (info,) = (build / "PrepareDataFunction").glob("pandas-*.dist-info")
    info.rename(info.with_name("pandas-2.3.1.dist-info"))  # what main shipped before issue 10
    assert check_build.main([str(build)]) == 1
    assert "PrepareDataFunction: pandas==2.3.1, but the tests run pandas==3.1.1" in capsys.readouterr().out


def test_check_build_refuses_another_pythons_wheels_and_missing_packages(tmp_path, capsys):
    build = fake_build(tmp_path)
    (info,) = (build / "ExperimentsFunction").glob("scipy-*.dist-info")
    (info / "WHEEL").write_text("Tag: cp311-cp311-manylinux2014_aarch64\n")
    shutil.rmtree(next((build / "CommonLayer" / "python").glob("boto3-*.dist-info")))
    assert check_build.main([str(build)]) == 1
    out = capsys.readouterr().out
    assert "ExperimentsFunction: scipy==1.17.1 is built for ['cp311-cp311-manylinux2014_aarch64']" in out
    assert "CommonLayer: boto3 is not installed" in out


def test_check_build_refuses_a_stale_api_contract(tmp_path, capsys):
    build = fake_build(tmp_path)
    contract = build / "CommonLayer" / "python" / "recsys_common" / "openapi.json"
    contract.write_text(json.dumps({**json.loads(contract.read_text()), "paths": {}}))
    assert check_build.main([str(build)]) == 1
    assert "openapi.json is not docs/openapi.yaml" in capsys.readouterr().out
    contract.unlink()
    assert check_build.main([str(build)]) == 1
    assert "no recsys_common/openapi.json" in capsys.readouterr().out


def test_check_build_refuses_a_build_without_sams_record(tmp_path, capsys):
    build = fake_build(tmp_path)
    (build.parent / "build.toml").unlink()
    assert check_build.main([str(build)]) == 1
    assert "which architecture was built?" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tag", "architecture", "ok"),
    [
        ("py3-none-any", "arm64", True),
        ("cp313-cp313-manylinux_2_28_aarch64", "arm64", True),
        ("cp313-cp313-manylinux2014_aarch64", "arm64", True),  # glibc 2.17 <= 2.34
        ("cp313-cp313-manylinux_2_34_x86_64", "x86_64", True),  # Amazon Linux 2023's glibc
        ("cp313-cp313-manylinux_2_35_x86_64", "x86_64", False),  # newer than Amazon Linux 2023
        ("cp313-cp313-manylinux_2_28_x86_64", "arm64", False),
        ("cp311-cp311-manylinux_2_28_aarch64", "arm64", False),
        ("cp313-cp313-macosx_11_0_arm64", "arm64", False),
        ("cp39-abi3-manylinux_2_17_aarch64", "arm64", True),  # stable ABI: any CPython >= 3.9
        ("cp313-cp313t-manylinux_2_28_aarch64", "arm64", False),  # free-threaded build
    ],
)
def test_wheel_tags_lambda_python313_can_load(tag, architecture, ok):
    assert check_build.tag_compatible(tag, architecture) is ok


# --- .ci/check_iam.py (parliament) -----------------------------------------------------------


def _template_copy(tmp_path: Path, edit) -> Path:
    text = edit((ROOT / "template.yaml").read_text())
    (tmp_path / "template.yaml").write_text(text)
    shutil.copytree(ROOT / "statemachines", tmp_path / "statemachines")
    return tmp_path / "template.yaml"


def test_check_iam_flags_put_events_on_tracker_arns(tmp_path, capsys):
    """Defect 1 of issue 10 as main had it: parliament knows PutEvents takes only "*"."""
    tracker = '!Sub "arn:${AWS::Partition}:personalize:${AWS::Region}:${AWS::AccountId}:event-tracker/*"'

    def narrow(text: str) -> str:
        marker = '              Action: personalize:PutEvents\n              Resource: "*"'
        assert text.count(marker) == 2
        return text.replace(
            marker, f"              Action: personalize:PutEvents\n              Resource: {tracker}"
        )

    assert check_iam.main([str(_template_copy(tmp_path, narrow))]) == 1
    out = capsys.readouterr().out
    assert out.count("RESOURCE_MISMATCH personalize:PutEvents") == 2


def test_check_iam_flags_unknown_actions_and_stale_exceptions(tmp_path, capsys):
    def typo(text: str) -> str:
        return text.replace("personalize:DescribeSolutionVersion", "personalize:DescribeSolutionVersions")

    assert check_iam.main([str(_template_copy(tmp_path, typo))]) == 1
    assert "UNKNOWN_ACTION" in capsys.readouterr().out
    exceptions = list(check_iam.EXCEPTIONS)
    check_iam.EXCEPTIONS.append(("NoSuchRole/*", "RESOURCE_STAR", "", "stale"))
    try:
        assert check_iam.main([]) == 1
        assert "STALE EXCEPTION" in capsys.readouterr().out
    finally:
        check_iam.EXCEPTIONS[:] = exceptions


# --- .ci/check_asl.py (asl-validator) --------------------------------------------------------

needs_node_tools = pytest.mark.skipif(
    not check_asl.VALIDATOR.exists(), reason="asl-validator not installed (make lint runs npm ci)"
)


@needs_node_tools
def test_check_asl_flags_a_broken_definition(tmp_path, capsys):
    path = _template_copy(tmp_path, lambda text: text)
    asl = tmp_path / "statemachines" / "training.asl.json"
    definition = json.loads(asl.read_text())
    definition["States"][definition["StartAt"]]["Next"] = "No such state"
    asl.write_text(json.dumps(definition))
    assert check_asl.main([str(path)]) == 1
    assert "TrainingStateMachine" in capsys.readouterr().out
