"""Serial-link benchmark against an emulated board over a pty; prints JSON.

    python bench/link.py [--rows 64 --cols 64 --steps 20000 --host-steps 2000]

Measures round trips of a whole-array read and of a VMM (a 64x64 array, and a 65-row array, the
IMSSA layout of 64 state rows plus one input row), then the loop of one 64x64 S4D-like program
(1 input row, 63 fed-back rows, 32 differential outputs) in host-loop mode (one VMM per step)
and on-board mode (one frame per sequence, for two sequence lengths).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from imssa_hw.drivers.board import Board
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.emulator.process import running_emulator


def round_trips(call, repeats: int) -> dict[str, float]:
    """Median and 99th percentile of `call()` in seconds, after a warm-up."""
    for _ in range(10):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median_s": round(float(np.median(times)), 7),
            "p99_s": round(float(np.percentile(times, 99)), 7)}


def s4d_like_program(rows: int, cols: int) -> LoopProgram:
    """Row 0: the input; rows 1..: fed back from the outputs; outputs: column pairs."""
    n_out = cols // 2
    row_input = np.full(rows, -1)
    row_input[0] = 0
    feedback = np.full(rows, -1)
    feedback[1:] = np.arange(rows - 1) % n_out
    return LoopProgram(0, row_input, np.full(rows, 0.1), feedback, np.full(rows, 2e3),
                       np.arange(n_out), np.arange(n_out, 2 * n_out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20000, help="on-board sequence length")
    parser.add_argument("--host-steps", type=int, default=5000, help="host-loop sequence length")
    parser.add_argument("--repeats", type=int, default=300, help="round trips per measurement")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"rows": args.rows, "cols": args.cols}
    with tempfile.TemporaryDirectory() as tmp:
        with running_emulator(Path(tmp) / "rows65", keep_state=False, arrays=1, rows=65, cols=args.cols) as emu:
            with Board.open(emu.port) as board:
                result["vmm_65_rows"] = round_trips(lambda: board.vmm(0, rng.uniform(-0.2, 0.2, 65)), args.repeats)
        with running_emulator(Path(tmp) / "main", keep_state=False, arrays=1, rows=args.rows, cols=args.cols) as emu:
            with Board.open(emu.port, timeout_s=2.0) as board:
                board.set_pulses(0, 3.0, rng.uniform(0.5, 1.0, (args.rows, args.cols)))
                result["read_array"] = round_trips(lambda: board.read_array(0), args.repeats)
                result["vmm"] = round_trips(lambda: board.vmm(0, rng.uniform(-0.2, 0.2, args.rows)), args.repeats)
                board.load_program([s4d_like_program(args.rows, args.cols)])

                inputs = rng.uniform(-1, 1, (args.host_steps, 1))
                start = time.perf_counter()
                board.run_sequence_host(inputs)
                result["host_loop_steps_per_s"] = round(args.host_steps / (time.perf_counter() - start))

                frames = {}
                for steps in (args.steps // 10, args.steps):
                    inputs = rng.uniform(-1, 1, (steps, 1))
                    sent = board.frames_sent
                    start = time.perf_counter()
                    board.run_sequence(inputs)
                    elapsed = time.perf_counter() - start
                    frames[steps] = board.frames_sent - sent
                result["onboard_steps_per_s"] = round(args.steps / elapsed)
                result["onboard_frames_per_sequence"] = frames[args.steps]
                result["onboard_frames_by_length"] = frames
                batch = rng.uniform(-1, 1, (32, args.steps // 10, 1))
                start = time.perf_counter()
                board.run_sequence(batch)
                result["onboard_batch32_steps_per_s"] = round(batch.shape[0] * batch.shape[1]
                                                              / (time.perf_counter() - start))
                result["link"] = vars(board.stats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
