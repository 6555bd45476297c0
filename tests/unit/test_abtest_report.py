"""The report command: real HTTP (a stdlib server answering with real analysis output) -> HTML + PNG."""

import pytest

from local.tools import report
from tests.support import json_api
from tests.unit.abtest_helpers import EVENT_TYPES
from tests.unit.test_abtest_analysis import WEIGHTS, _experiment

from abtest import AnalysisOptions, analyze  # isort: skip


@pytest.fixture
def results():
    totals, _ = _experiment(1, {"A": (0.1, 0.2), "B": (0.1, 0.35), "C": (0.1, 0.2)}, days=3)
    out = analyze(totals, {"control": "A", "weights": WEIGHTS}, EVENT_TYPES, AnalysisOptions())
    return {"experiment_id": "recs-ab", "status": "RUNNING", **out}


@pytest.fixture
def server(results):
    seen = []

    def answer(method, path, body):
        seen.append(path)
        if path.startswith("/experiments/recs-ab/results"):
            return 200, results
        return 404, {"message": "not found"}

    with json_api(answer) as url:
        yield url, seen


def test_report_command_writes_html_and_png(server, tmp_path, capsys, fake_aws_env):
    url, seen = server
    assert report.main(["--api-url", url, "--out", str(tmp_path), "--analysis", "fixed"]) == 0
    assert seen == ["/experiments/recs-ab/results?analysis=fixed"]
    png = tmp_path / "recs-ab-results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    page = (tmp_path / "recs-ab-results.html").read_text()
    assert "Variant B wins" in page and "data:image/png;base64," in page
    assert "Variant B wins" in capsys.readouterr().out


def test_report_command_explains_an_api_error(server, tmp_path, fake_aws_env):
    url, _ = server
    with pytest.raises(SystemExit, match="404"):
        report.main(["--api-url", url, "--experiment", "other", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="cannot reach"):
        report.main(["--api-url", "http://127.0.0.1:9", "--out", str(tmp_path)])
