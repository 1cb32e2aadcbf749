"""The noise-study target: the paper's Fig. 4 finding (5-bit kernels degrade strongly at
sigma = 5 uS of noise (open loop); 2-bit ones hold past 15 uS) and write-verify for 4 bits and more.

The paper counts signed bits: its 2-bit kernels are ternary (`--bits 1` here, one bit per
device) and its 5-bit ones have levels -15..15 (`--bits 4`). Two schemes, each one
`imssa-hw sweep` with noise on the targets (open loop) and one with write-verify, over three models per bit width (data
and training seeds 0, 1, 2; models trained once and cached):
- paper: Abar's fixed range spans the unit disc (`--a-range 1`), as in the paper;
- default: the toolchain's default range, |Abar| <= 0.75 (`--a-range 0.75`).
Prints JSON: per scheme, method, bit width and sigma [mean accuracy %, spread over models and
draws %, points lost against the same models without noise], and the wall times.

    python bench/sweep.py [--schemes paper,default] [--model-seeds 0,1,2] [--seeds 8] [--wv-seeds 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEMES = {"paper": ["--a-range", "1"], "default": ["--a-range", "0.75"],
           "paper-shared": ["--a-range", "1", "--ranges", "shared"]}
NOISE = {"bits": "1,2,4,5", "sigma_us": "0,5,10,15,20"}
WRITE_VERIFY = {"bits": "1,2,4,5,8", "sigma_us": "0,5,20"}


def sweep(out: Path, scheme: list[str], method: str, grid: dict, model_seeds: str, seeds: int,
          workers: int) -> dict:
    """Run one `imssa-hw sweep`; its table, and its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "sweep", *scheme,
                    "--method", method, "--bits", grid["bits"], "--sigma-us", grid["sigma_us"],
                    "--seed", model_seeds, "--draws", str(seeds), "--workers",
                    str(workers), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    table: dict = {}
    for r in rows:
        table.setdefault(f"{r['bits']} bit/device (paper {r['paper_bits']}-bit)", {})[
            f"{r['sigma_us']:g} uS"] = [round(100 * r["accuracy_mean"], 2),
                                        round(100 * r["accuracy_std"], 2), r["points_lost"]]
    return {"table": table, "wall_time_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default="paper,default",
                        help=f"comma-separated, of {', '.join(SCHEMES)}")
    parser.add_argument("--model-seeds", default="0,1,2", help="models per bit width")
    parser.add_argument("--seeds", type=int, default=8, help="noise draws per model and point")
    parser.add_argument("--wv-seeds", type=int, default=1, help="emulated boards per model and point")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    report = {"paper": "5-bit kernels degrade strongly at 5 uS open loop; 2-bit hold past 15 uS",
              "cells": "[accuracy %, spread over models and draws %, points lost against 0 uS]",
              "model_seeds": args.model_seeds, "schemes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.schemes.split(","):
            scheme = SCHEMES[name]
            ol = sweep(Path(tmp) / f"ol-{name}", scheme, "noise", NOISE,
                       args.model_seeds, args.seeds, args.workers)
            wv = sweep(Path(tmp) / f"wv-{name}", scheme, "write_verify", WRITE_VERIFY,
                       args.model_seeds, args.wv_seeds, args.workers)
            report["schemes"][name] = {
                "args": " ".join(scheme), "noise": ol["table"], "write_verify": wv["table"],
                "wall_time_s": {"noise": ol["wall_time_s"], "write_verify": wv["wall_time_s"]},
                "seeds": {"noise": args.seeds, "write_verify": args.wv_seeds}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
