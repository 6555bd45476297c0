"""Time from `python -m local up` to a trained, serving system on the sample data (target < 60 s).

Runs the real command in a fresh state dir twice: once with --no-train (the baseline: start the
processes and create every resource) and once with training (upload, the whole Step Functions
pipeline, campaigns live), then times the first recommendation through the HTTP API.
Prints seconds and the ratio of the full start to the baseline.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60.0


def _start(state_dir: Path, *args: str) -> tuple[subprocess.Popen, float, list[str], str]:
    """Start the stack; return once it prints its API line (ready), with the elapsed seconds."""
    begun = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "local", "up", "--port", "0", "--state-dir", str(state_dir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip())
        found = re.match(r"API: (\S+)", line)
        if found:
            return process, time.perf_counter() - begun, lines, found.group(1)
    process.wait()
    raise RuntimeError("the stack exited before it was ready:\n" + "\n".join(lines[-40:]))


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def _first_recommendation(api_url: str) -> tuple[float, dict]:
    request = urllib.request.Request(
        f"{api_url}/recommendations",
        data=json.dumps({"user_id": "1", "num_results": 10}).encode(),
        headers={"content-type": "application/json"},
    )
    begun = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = json.loads(resp.read())
    return time.perf_counter() - begun, body


def main() -> None:
    for needed in (ROOT / "template.yaml", ROOT / "datasets" / "sample"):
        if not needed.exists():
            print(f"not measured: {needed} does not exist yet")
            return
    with tempfile.TemporaryDirectory() as tmp:
        process, baseline, _, _ = _start(Path(tmp) / "baseline", "--no-train")
        _stop(process)
        print(f"start, no training (baseline): {baseline:6.1f} s")

        process, full, lines, api_url = _start(Path(tmp) / "full")
        try:
            states = [line.strip() for line in lines if "✓" in line]
            latency, body = _first_recommendation(api_url)
        finally:
            _stop(process)
    print(f"start to trained and serving:  {full:6.1f} s  (target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if full < TARGET_SECONDS else 'NOT met'})")  # fmt: skip
    print(f"ratio full / baseline:         {full / baseline:6.1f} x")
    print(f"pipeline states finished:      {len(states)}")
    print(f"first recommendation:          {latency * 1000:6.1f} ms, variant {body.get('variant')}, "
          f"fallback {body.get('fallback')}, {len(body.get('items', []))} items")  # fmt: skip


if __name__ == "__main__":
    main()
