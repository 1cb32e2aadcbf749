"""How fast this machine runs Python right now; prints JSON.

    python bench/machine_speed.py [--runs 5]

CPU seconds of one fixed loop (5 M integer multiply-adds), run `--runs` times. Run it before
and after a timing (the test suite's, a bench's) to see whether the machine, not the code,
changed: on the 2-core development machine it took 0.25 to 0.48 CPU-s over 11 runs in a row on
idle cores (docs/results.md, Test suite).
"""

from __future__ import annotations

import argparse
import json
import time

LOOP = 5_000_000


def loop_cpu_s() -> float:
    """CPU seconds of the fixed loop."""
    start = time.process_time()
    total = 0
    for i in range(LOOP):
        total += i * i
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    times = [loop_cpu_s() for _ in range(max(1, runs))]
    print(json.dumps({"loop": LOOP, "cpu_s": [round(t, 3) for t in times],
                      "min_cpu_s": round(min(times), 3), "max_cpu_s": round(max(times), 3)}))


if __name__ == "__main__":
    main()
