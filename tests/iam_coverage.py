"""`pytest --iam-coverage`: every statement of the template's IAM policies must allow some call.

The local stack enforces the template's policies (local/iam). With this option the session gives
every stack it starts a directory (LOCAL_IAM_USAGE_DIR) where the authorizers record the id of each
statement that allowed a call; at the end, a statement no call used fails the session, unless
docs/aws-conformance.md's table "IAM statements no local test exercises" lists it with the reason
(statements only AWS services use on their own). A listed statement that a call did use, or a row
that names no statement, fails too: the table stays true. AWS managed policies are not the
template's and are not counted. `make test` passes the option; a partial run should not.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "aws-conformance.md"
TABLE_HEADING = "### IAM statements no local test exercises"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--iam-coverage",
        action="store_true",
        help="fail the session if a statement of template.yaml's IAM policies allowed no call (local/iam)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--iam-coverage"):
        from local.iam.authorizer import USAGE_DIR_ENV

        usage = Path(tempfile.mkdtemp(prefix="iam-usage-"))
        os.environ[USAGE_DIR_ENV] = str(usage)  # inherited by every stack the session starts
        config._iam_usage_dir = usage


def exceptions(doc: Path = DOC) -> list[str]:
    """The statement id patterns of the documented exceptions table (first column, in backticks)."""
    text = doc.read_text()
    start = text.index(TABLE_HEADING)
    section = text[start + len(TABLE_HEADING) :].split("\n#", 1)[0]
    return re.findall(r"^\|\s*`([^`]+)`", section, re.MULTILINE)


def template_statements() -> list[str]:
    from local.iam import policies
    from local.stack import load_template

    return [
        s["id"]
        for role in policies.roles(load_template()).values()
        for s in role.statements
        if not s["managed"]
    ]


def used_statements(usage: Path) -> set[str]:
    """Ids that alone allowed some call; `~id`: allowed calls only together with another statement."""
    return {line for path in usage.glob("used-*.txt") for line in path.read_text().splitlines() if line}


def coverage_problems(statements: list[str], used: set[str], patterns: list[str]) -> list[str]:
    problems = []
    for sid in statements:
        excepted = [p for p in patterns if fnmatch.fnmatchcase(sid, p)]
        if sid not in used and f"~{sid}" in used and not excepted:
            problems.append(
                f"redundant: {sid} allowed calls only another statement also allowed (removing it fails nothing)"
            )
        elif sid not in used and not excepted:
            problems.append(f"never used by any call: {sid} (remove it, or test the code that needs it)")
        if (sid in used or f"~{sid}" in used) and excepted:
            problems.append(f"listed as unused in {DOC.name} but a call used it: {sid} ({excepted[0]})")
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(sid, pattern) for sid in statements):
            problems.append(f"{DOC.name} lists {pattern}, which names no statement of the template")
    return problems


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    usage = getattr(session.config, "_iam_usage_dir", None)
    if usage is None or exitstatus not in (0, 1):
        return
    problems = coverage_problems(template_statements(), used_statements(usage), exceptions())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", f"IAM coverage: {len(problems)} problem(s)")
        for problem in problems:
            reporter.write_line(problem)
    if problems:
        session.exitstatus = 1
