"""Benchmark `imssa-hw compile` on a one-layer H=64, N=16 model; prints JSON.

H=64 kernels of N=16 are tiles of 17 x 34 cells (differential columns): one per 64x64 array,
so they do not fit the 3-array board-default; the benchmark uses the shipped board-large
profile (16 arrays of 256x256, 7 kernels per array). Times: compile_checkpoint (mapping,
placement, schedule, probe runs), saving the deploy directory, the PNG, and the whole command
in a fresh process (interpreter start and imports included). With --defect-rate, that fraction
of the board's devices is stuck (half stuck-on at 150 uS, half stuck-off at 1 uS) and the
placement works around them.

    python bench/compile.py [--h 64] [--n 16] [--bits 2] [--profile board-large]
                            [--defect-rate 0.005] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_S = 2.0


def _model(path: Path, h: int, n: int, bits: int) -> None:
    import torch

    from imssa_hw.training.classifier import S4DClassifier, save_model
    from imssa_hw.model.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(d_input=40, n_classes=2, h=h, n=n, n_layers=1, bits=bits)
    features = np.random.default_rng(0).standard_normal((16, 64, 40)).astype(np.float32)
    save_model(path, S4DClassifier(cfg).eval(), {"features": {"n_frames": 64}}, features)


def _defects(path: Path, geometry, rate: float, seed: int = 0):
    from imssa_hw.compiler.defects import DefectKind, DefectMap, StuckDevice

    rng = np.random.default_rng(seed)
    cells = int(rate * np.prod(geometry.shape))
    flat = rng.choice(int(np.prod(geometry.shape)), cells, replace=False)
    stuck = []
    for index, on in zip(flat, rng.random(cells) < 0.5):
        a, r, c = np.unravel_index(index, geometry.shape)
        stuck.append(StuckDevice(int(a), int(r), int(c), DefectKind.STUCK_ON if on else DefectKind.STUCK_OFF,
                                 150e-6 if on else 1e-6))
    defects = DefectMap(*geometry.shape, tuple(stuck))
    defects.save(path)
    return defects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h", type=int, default=64)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--bits", type=int, default=2)
    parser.add_argument("--profile", default="board-large")
    parser.add_argument("--defect-rate", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.board import load_board_profile
    from imssa_hw.compiler import compile_checkpoint, save_deployment
    from imssa_hw.compiler.plots import plot_targets

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _model(tmp / "model.pt", args.h, args.n, args.bits)
        profile = load_board_profile(args.profile)
        defects = (_defects(tmp / "defects.json", profile.geometry, args.defect_rate)
                   if args.defect_rate else None)
        ckpt = load_checkpoint(tmp / "model.pt")
        times = {"compile_s": [], "save_s": [], "plot_s": []}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            dep = compile_checkpoint(ckpt, profile, defects)
            t1 = time.perf_counter()
            save_deployment(dep, tmp / "deploy")
            t2 = time.perf_counter()
            plot_targets(dep, tmp / "deploy" / "targets.png")
            t3 = time.perf_counter()
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key].append(value)
        command = [sys.executable, "-m", "imssa_hw.cli.main", "compile", str(tmp / "model.pt"),
                   "--out", str(tmp / "cli"), "--profile", args.profile]
        if defects:
            command += ["--defects", str(tmp / "defects.json")]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        cli_s = time.perf_counter() - t0
    best = {key: round(min(values), 4) for key, values in times.items()}
    in_process = round(sum(best.values()), 4)
    s = dep.summary
    from imssa_hw.drivers.link import usable_cores  # after the timings: it imports pyserial

    print(json.dumps({
        "h": args.h, "n": args.n, "bits": args.bits, "profile": args.profile,
        "defect_rate": args.defect_rate, "stuck_devices": len(defects.stuck) if defects else 0,
        "unavoidable_defects": len(s["unavoidable_defects"]),
        "arrays_used": s["arrays_used"], "cells_used": s["cells_used"],
        "utilization": round(s["utilization"], 4), "steps_per_sample": s["steps_per_sample"],
        "ideal_max_abs_error": s["ideal_max_abs_error"], **best,
        "in_process_s": in_process, "cli_wall_s": round(cli_s, 3), "target_s": TARGET_S,
        "meets_target": cli_s < TARGET_S, "machine_cores": usable_cores(),
    }, indent=2))


if __name__ == "__main__":
    main()
