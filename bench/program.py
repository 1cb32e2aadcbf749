"""Write-verify benchmark on an emulated board over a pty; prints JSON.

    python bench/program.py [--rows 64 --cols 64 --seed 0 --targets-seed 1]
                            [--strategies adaptive,ramp,open_loop] [--calibration measured|oracle|none]
                            [--profile emulator-default|emulator-harsh|FILE]
                            [--baud 921600,12e6 [--protocols 1,2]]

One 64x64 array of the default emulated devices (`--profile`: another emulator profile),
random 4-bit targets (16 levels over the board-default window 1-150 uS, level 0 = the off
level), every cell used. Each strategy runs on a fresh emulator started from the same seed (the
same devices and read chain each time), through the real driver and pty, journaling to a temp
folder like `imssa-hw program` does. `adaptive-0.8.2` in `--strategies` is the baseline for the
0.9.0 noise rules: `adaptive` as it was until 0.8.2, which took any error beyond 3 tolerances for
coarse (`coarse_sigmas` 0) and assumed 1 % read noise whatever the calibration measured.

Calibration (`--calibration`): `measured` (default) runs `imssa-hw calibrate --smu` once on an
emulator of the same seed and uses its calib.json for every strategy (read-chain correction and
the measured SET/RESET curves); `oracle` takes the read chain's gains and offsets from the
emulator's state file (ground truth, outside the protocol: an upper bound); `none` programs on
raw reads with the population curves.

Link rates (`--baud`): the adaptive strategy over the pty (memory speed) and at each rate, for
each protocol version in `--protocols` (1: a board that speaks only version 1, whole-array
pulses and reads; 2: sparse pulses and reads of the live devices), in the same run; each entry
has its time over the pty time of its protocol (`time_over_pty`) and the bytes the programming
moved.

Per strategy: what the programmer reports (yield_working, yield_all, mean and p95 pulses per
device, iterations, frames, wall time) and the truth from the emulator's state file, relaxed
(`true_yield_healthy`: healthy devices within the tolerance of their target; `true_yield_working`:
the same over the devices the programmer did not give up as stuck).
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

from imssa_hw.compiler import load_profile
from imssa_hw.drivers.board import Board
from imssa_hw.drivers.framing import PROTOCOL_VERSION
from imssa_hw.emulator.devices import HEALTHY
from imssa_hw.emulator.process import running_emulator
from imssa_hw.programming import Settings, parse_tolerance, program_targets
from imssa_hw.programming.strategy import STUCK


def random_targets(shape: tuple[int, int, int], seed: int, profile) -> np.ndarray:
    """4-bit levels 0..15 over the profile window (G_min + L * dG)."""
    window = profile.conductance
    levels = np.random.default_rng(seed).integers(0, 16, shape)
    return window.g_min_siemens + levels * window.dg(4)


def measured_calibration(workdir: Path, seed: int, rows: int, cols: int,
                         emulator_profile: str | None) -> tuple[Path, float]:
    out = workdir / "calib"
    started = time.monotonic()
    with running_emulator(workdir / "emulator-calibrate", arrays=1, rows=rows, cols=cols,
                          seed=seed, smu=True, profile=emulator_profile) as emu:
        done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "calibrate", "--port",
                               emu.port, "--smu", emu.smu_resource, "--out", str(out)],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"calibrate failed: {done.stderr.strip().splitlines()[-1:]}")
    return out, time.monotonic() - started


def oracle_calibration(emu, board: Board):
    from imssa_hw.calibration.data import Calibration, Reference

    chain = emu.state().chain
    lsb = board.info.adc_lsb_a(board.config.read_range_a)
    info = board.info
    return Calibration(info.board_id, info.arrays, info.rows, info.cols, chain.gain,
                       chain.offset_codes * lsb / board.config.v_read, None, None, {},
                       v_read_v=board.config.v_read, read_range_a=board.config.read_range_a,
                       reference=Reference.SMU)  # the emulator's own chain: as true as an SMU


BASELINES = {"adaptive-0.8.2": ("adaptive", Settings(coarse_sigmas=0.0, read_noise_rel=0.01))}
"""Strategies as they were, by the name `--strategies` takes: (strategy, settings)."""


def run_strategy(name: str, workdir: Path, args, targets: np.ndarray, calib_dir: Path | None,
                 profile, baud: float = 0.0, protocol: int = PROTOCOL_VERSION) -> dict:
    from imssa_hw.calibration.data import load_calibration

    used = np.ones(targets.shape, bool)
    tol = parse_tolerance(args.tolerance)
    strategy, settings = BASELINES.get(name, (name, None))
    run = f"{name}-{baud:g}-v{protocol}"
    with running_emulator(workdir / f"emulator-{run}", arrays=1, rows=args.rows, cols=args.cols,
                          seed=args.seed, baud=baud, profile=args.profile,
                          settings={"board.protocol_version": protocol}) as emu:
        with Board.open(emu.port) as board:
            cal = None
            if args.calibration == "measured":
                cal = load_calibration(calib_dir)
            elif args.calibration == "oracle":
                cal = oracle_calibration(emu, board)
            moved = board.stats.bytes_sent + board.stats.bytes_received
            started = time.monotonic()
            result = program_targets(board, targets, used, calibration=cal, strategy=strategy,
                                     settings=settings, tolerance=tol,
                                     profile_limits=profile.limits,
                                     off_siemens=profile.conductance.g_min_siemens,
                                     journal=workdir / f"journal-{run}.jsonl")
            elapsed = time.monotonic() - started
            moved = board.stats.bytes_sent + board.stats.bytes_received - moved
        devices = emu.state().devices
    truth = devices.g_final_siemens  # relaxed: what the devices settle at
    healthy = devices.defect == HEALTHY
    tol_siemens = tol.of(targets)
    within = np.abs(truth - targets) <= tol_siemens
    working = result.status != STUCK
    r = result.report
    keys = ("yield_working", "yield_all", "mean_pulses_per_device", "p95_pulses_per_device",
            "max_pulses_per_device", "iterations", "frames", "wall_time_s", "unfinished",
            "verified", "devices", "working", "within_tolerance")
    out = {k: r[k] for k in keys}
    out.update({
        "protocol": protocol,
        "bytes_moved": moved,
        "mean_abs_error_us": round(r["mean_abs_error_siemens"] * 1e6, 4),
        "stuck": len(r["stuck_devices"]),
        "command_time_s": round(elapsed, 3),
        "true_yield_healthy": round(float(within[healthy].mean()), 6),
        "true_yield_working": round(float(within[working].mean()), 6),
        "true_misses_working": int((working & ~within).sum()),
        "true_mean_abs_error_us": round(float(np.abs(truth - targets)[working].mean() * 1e6), 4),
        "defects_in_emulator": int((~healthy).sum()),
        "stuck_that_are_defects": int((~healthy & ~working).sum()),
    })
    return out


def link_rates(workdir: Path, args, targets: np.ndarray, calib_dir: Path | None, profile,
               rates: list[float], protocol: int) -> dict:
    """The adaptive strategy over the pty and at each rate, on a board of `protocol`."""
    runs = {f"{rate:g}": run_strategy("adaptive", workdir, args, targets, calib_dir, profile,
                                      rate, protocol) for rate in [0.0, *rates]}
    pty = runs["0"]["wall_time_s"]
    for run in runs.values():
        run["time_over_pty"] = round(run["wall_time_s"] / pty, 3)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="emulator seed (the devices)")
    parser.add_argument("--targets-seed", type=int, default=1)
    parser.add_argument("--tolerance", default="2uS")
    parser.add_argument("--strategies", default="adaptive,ramp,open_loop",
                        help="strategies to run over the pty, comma-separated ('' for none); "
                             "adaptive-0.8.2: adaptive with the rules of 0.8.2 (the baseline)")
    parser.add_argument("--calibration", choices=("measured", "oracle", "none"), default="measured")
    parser.add_argument("--baud", default="0",
                        help="link rates to program at, bit/s, comma-separated, e.g. "
                             "921600,12e6: the adaptive strategy at each and over the pty")
    parser.add_argument("--protocols", default=str(PROTOCOL_VERSION),
                        help="protocol versions the link-rate runs use, comma-separated, e.g. 1,2")
    parser.add_argument("--profile", default=None,
                        help="emulator profile (name or TOML file; default: emulator-default)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the work folder (journals, calibration) here")
    args = parser.parse_args()
    profile = load_profile("board-default")
    targets = random_targets((1, args.rows, args.cols), args.targets_seed, profile)
    result: dict = {"rows": args.rows, "cols": args.cols, "seed": args.seed,
                    "targets_seed": args.targets_seed, "tolerance": args.tolerance,
                    "calibration": args.calibration,
                    "profile": args.profile or "emulator-default"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        workdir.mkdir(parents=True, exist_ok=True)
        calib_dir = None
        if args.calibration == "measured":
            calib_dir, seconds = measured_calibration(workdir, args.seed, args.rows, args.cols,
                                                      args.profile)
            result["calibration_time_s"] = round(seconds, 2)
        for name in filter(None, args.strategies.split(",")):
            result[name] = run_strategy(name, workdir, args, targets, calib_dir, profile)
        rates = [float(b) for b in args.baud.split(",") if float(b) > 0]
        if rates:
            result["link_rates"] = {
                f"v{protocol}": link_rates(workdir, args, targets, calib_dir, profile, rates,
                                           protocol)
                for protocol in (int(p) for p in args.protocols.split(","))}
    if "adaptive" in result and "ramp" in result:
        a, r = result["adaptive"], result["ramp"]
        result["pulses_adaptive_over_ramp"] = round(a["mean_pulses_per_device"]
                                                    / max(r["mean_pulses_per_device"], 1e-9), 4)
        result["targets"] = {
            "adaptive_yield_working_ge_99.9%": a["yield_working"] >= 0.999,
            "adaptive_true_yield_working_ge_99.9%": a["true_yield_working"] >= 0.999,
            "adaptive_pulses_le_ramp/5": result["pulses_adaptive_over_ramp"] <= 0.2,
            "adaptive_under_30s": a["wall_time_s"] < 30}
    for version, runs in result.get("link_rates", {}).items():
        if "921600" in runs:
            result.setdefault("targets", {})[f"{version}_921600_baud_within_1.5x_pty"] = (
                runs["921600"]["time_over_pty"] <= 1.5)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
