"""The ArC TWO target: the demo flow in host mode on the ArC TWO stand-in (one 32x32 1T1R
crossbar, `arc2://` backend) against the native emulated board, for the same model as trained,
side by side in one run. Prints JSON.

The native board runs `imssa-hw demo --mode host` (board-default, SMU calibration); the model it
trained (cached) is then calibrated for, compiled for (board-arc2), programmed onto and run on
the stand-in through `drivers.arc2.Arc2Board` with the same stages (`run_on_board`; on-array
calibration: ArC TWO has no SMU route). The model must fit one 32x32 array: three kernels of
N = 4 (5x10 cells each), hence H = 3. The target: the stand-in's hardware accuracy with the
digital parts as trained within 1 point of the native board's.

    python bench/arc2.py [--seed 0] [--h 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from arc2_standin import StandInArC2  # noqa: E402  (tests/: the stand-in lives with the tests)

from imssa_hw.compiler import load_profile  # noqa: E402
from imssa_hw.drivers.arc2 import Arc2Board  # noqa: E402
from imssa_hw.model.checkpoint import load_checkpoint  # noqa: E402
from imssa_hw.workflows.demo import DemoSettings, run_demo, run_on_board  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="Seed of the model and both boards.")
    parser.add_argument("--h", type=int, default=3, help="Kernels (H) of the one-layer model.")
    parser.add_argument("--out", type=Path, default=None, help="Keep every file here.")
    args = parser.parse_args()
    settings = DemoSettings(seed=args.seed, model={"h": args.h}, mode="host")
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        native = run_demo(out / "native", settings, echo=log)
        timings: dict[str, float] = {}
        standin = StandInArC2("1t1r", seed=args.seed)
        started = time.perf_counter()
        with Arc2Board(standin, "1t1r", board_id="ArC2-standin", firmware="stand-in") as board:
            run = run_on_board(board, None, load_checkpoint(out / "native" / "model.pt"),
                               out / "native" / "model.pt", load_profile("board-arc2"),
                               out / "arc2", settings, timings, log, finetune=False)
            vmms = standin.counts["read_slice_open"]
    arc2 = run.before["hardware_accuracy"]
    reference = native["hardware_accuracy_before_finetune"]
    print(json.dumps({
        "model": {"task": settings.task, "bits": settings.bits, "h": args.h, "seed": args.seed,
                  "software_accuracy": native["software_accuracy"], "n_test": native["n_test"]},
        "native": {"board_profile": native["board_profile"],
                   "hardware_accuracy": reference, "yield_working": native["yield_working"],
                   "timings_s": native["timings_s"]},
        "arc2_standin": {"board_profile": "board-arc2", "hardware_accuracy": arc2,
                         "agreement": run.before["agreement"],
                         "yield_working": run.programmed.report["yield_working"],
                         "mean_pulses_per_device": run.programmed.report["mean_pulses_per_device"],
                         "column_spread_after": run.calibration_run.report["column_spread_after"],
                         "vmms": vmms, "instrument_calls": sum(standin.counts.values()),
                         "timings_s": timings,
                         "wall_time_s": round(time.perf_counter() - started, 2)},
        "difference_points": round(100 * (arc2 - reference), 3),
        "target": "ArC TWO stand-in at most 1 point below the native board",
        "met": bool(arc2 >= reference - 0.01),
    }, indent=2))


if __name__ == "__main__":
    main()
