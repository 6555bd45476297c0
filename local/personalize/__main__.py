"""`python -m local.personalize --port PORT --data-dir DIR [--host 127.0.0.1]`: the engine on its own."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from local.personalize.engine import DataDirInUse
from local.personalize.server import PersonalizeServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.personalize", description=__doc__)
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (0 = any free port)")
    parser.add_argument("--data-dir", required=True, help="where resources, data and models are kept")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started it dies"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = PersonalizeServer(args.data_dir, args.host, args.port)
    try:
        server.start()
    except DataDirInUse as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"Local Personalize engine on {server.url} (data in {args.data_dir})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.exit_with_parent:  # a stack killed with -9 must not leave its engine holding the data dir
        threading.Thread(target=_watch_parent, args=(os.getppid(), stop), daemon=True).start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _watch_parent(parent: int, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        if os.getppid() != parent:  # re-parented: the stack is gone
            stop.set()


if __name__ == "__main__":
    code = main()
    # The store writes through and the server is stopped: skip the interpreter's slow teardown of
    # numpy's and pandas' state, so that the stack's stop stays within seconds.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
