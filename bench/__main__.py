"""Run every benchmark (bench/bench_*.py, each with a main()) and print its figures.

`python -m bench` runs all; `python -m bench engine serving` runs the named ones; options
(`--quick`) are left for the benchmarks to read from sys.argv.
"""

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    chosen = [a for a in argv if not a.startswith("--")]
    wanted = [n for n in names if not chosen or n.removeprefix("bench_") in chosen]
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"--- {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
