"""The local Personalize engine in its own process (`python -m local.personalize`).

Why a process and not threads of the stack: the stack process already hosts moto (every
DynamoDB/S3 call of the serving Lambdas) and moto's Step Functions engine. Training (numpy) and
serving in the same interpreter competed for one GIL with them, and under simulated traffic
moto calls stalled past the Lambdas' 2 s read timeout. A separate process keeps both responsive
and is also what a user runs by hand, so the stack exercises the same entry point.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


class EngineStartError(RuntimeError):
    """The engine process exited or did not listen in time; the message has its log's tail."""


class EngineProcess:
    def __init__(self, data_dir: Path, host: str, port: int, env: dict[str, str], log_path: Path):
        self.data_dir, self.host, self.port = Path(data_dir), host, port
        self.env, self.log_path = env, Path(log_path)
        self.url = f"http://{host}:{port}"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> EngineProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.personalize", "--host", self.host, "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--exit-with-parent"],
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EngineStartError(f"the local Personalize engine did not start:\n{self._log_tail()}")
            time.sleep(0.05)
        return self

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            return s.connect_ex((self.host, self.port)) == 0

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the engine saves nothing on exit: its store writes through
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
