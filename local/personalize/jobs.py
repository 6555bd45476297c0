"""Background work (imports, training, campaign deployments) on a small pool of worker threads."""

from __future__ import annotations

import logging
import queue
import threading

from local.personalize.store import StoreClosed

log = logging.getLogger("local.personalize")


class Jobs:
    def __init__(self, workers: int = 2):
        self._queue: queue.Queue = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"personalize-job-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn, *args) -> None:
        self._queue.put((fn, args))

    def stop(self) -> None:
        """Stop taking jobs. A job already running finishes in its thread, but the closed store refuses
        its writes, so a restarted engine resumes it from the saved state instead."""
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            fn, args = job
            try:
                fn(*args)
            except StoreClosed:
                pass
            except Exception:  # a job's own failures are recorded by the job; this is a bug
                log.exception("background job %s failed", getattr(fn, "__name__", fn))
