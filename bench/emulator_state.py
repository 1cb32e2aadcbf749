"""The emulator's state file: how long a save and a load take, per board shape.

The emulator saves its state after every pulse command, so a save's time is part of every
pulse's. Prints JSON: per shape, the median of `--repeats` saves and loads (ms) and the file's
size. Run it on two trees to compare them.

    python bench/emulator_state.py [--shapes 2x16x16,3x64x64,8x64x64] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from imssa_hw import __version__
from imssa_hw.emulator.clock import CLOCKS
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.emulator.server import build_board
from imssa_hw.emulator.state import load_state, save_state


def timed_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="2x16x16,3x64x64,8x64x64",
                        help="board shapes ARRAYSxROWSxCOLS, comma-separated")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "board.npz"
        for shape in args.shapes.split(","):
            arrays, rows, cols = (int(v) for v in shape.split("x"))
            profile = load_emulator_profile(None, {"board.arrays": arrays, "board.rows": rows,
                                                   "board.cols": cols})
            board, _ = build_board(profile, 1, None, 1.0, CLOCKS["wall"])
            save_ms = timed_ms(lambda: save_state(path, board.state), args.repeats)
            load_ms = timed_ms(lambda: load_state(path), args.repeats)
            results.append({"shape": shape, "save_ms": round(save_ms, 3),
                            "load_ms": round(load_ms, 3), "bytes": path.stat().st_size})
    print(json.dumps({"version": __version__, "repeats": args.repeats, "shapes": results}))


if __name__ == "__main__":
    main()
