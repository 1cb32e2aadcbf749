"""The demo's stages at real link rates: calibration, programming and inference over the pty and
through an emulated UART / USB link, side by side in one run. Prints JSON.

    python bench/link_rates.py [--rates 0,12e6,921600] [--modes onboard,host] [--seed 0]

Each rate runs `imssa-hw demo` (the default model, cached after the first run; the default
board, SMU calibration) against an emulator started with `--baud RATE` (0: the pty at memory
speed), which charges every request and reply 10 bits a byte on the wire. Reported per rate and
inference mode: each stage's time (calibrate, program, infer as trained; fine-tuning and its
inference too), its ratio to the pty's, and the accuracies, which the link must not change.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from imssa_hw.workflows.demo import DemoSettings, run_demo

STAGES = ("calibrate", "program", "infer", "finetune", "infer-finetuned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0,12e6,921600",
                        help="Link rates in bit/s, comma-separated; 0 is the pty.")
    parser.add_argument("--modes", default="onboard,host", help="Inference modes to run.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            for rate in rates:
                settings = DemoSettings(seed=args.seed, mode=mode, emulator={"baud": rate})
                summary = run_demo(Path(tmp) / f"{mode}-{rate:g}", settings, echo=log)
                runs.append({"mode": mode, "baud": rate,
                             "timings_s": {s: summary["timings_s"][s] for s in STAGES},
                             "hardware_accuracy_as_trained":
                                 summary["hardware_accuracy_before_finetune"],
                             "hardware_accuracy_finetuned": summary["hardware_accuracy"],
                             "yield_working": summary["yield_working"]})
    for run in runs:
        pty = next(r for r in runs if r["mode"] == run["mode"] and r["baud"] == 0)
        run["ratio_to_pty"] = {s: round(run["timings_s"][s] / pty["timings_s"][s], 2)
                               for s in STAGES if pty["timings_s"][s] > 0}
    print(json.dumps({"seed": args.seed, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
