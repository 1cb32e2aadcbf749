"""Benchmark of `imssa-hw calibrate` on emulated boards; prints JSON.

    python bench/calibrate.py [--rows 64 --cols 64 --arrays 1 --seed 0] [--skip-program]

1. read error: board reads (raw and corrected) against the emulator's true conductances (its
   state file, outside the board protocol) on a held-out state programmed after calibration
   (one SET per device at a random gate, 0.6-1.5 V, then 2.5 s of relaxation), over healthy
   devices at >= 5 uS; single reads and the mean of 4 reads; calibrated with and without the SMU;
   and the VMM calibration's column offsets (ADC codes) and gains against the emulator's;
2. write-verify (imssa_hw.programming, adaptive strategy, 2 uS) of random 4-bit targets
   (16 levels over 2-150 uS) with and without the SMU calibration: mean pulses per device, and
   the yield against the true conductances; on two boards:
   - `datasheet`: the default emulated devices, whose SET/RESET response is exactly the
     population curves the programmer assumes without calibration;
   - `off_datasheet`: devices that differ from those curves (OFF_DATASHEET: weaker, later SET
     compliance; RESET needing more voltage), the case calibration is for.

Every emulator of a scenario is drawn from the same seed: the same board each time.
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

from imssa_hw.calibration import load_calibration
from imssa_hw.drivers.board import Board
from imssa_hw.emulator.devices import HEALTHY
from imssa_hw.emulator.process import running_emulator

SETTLE_S = 2.5
"""Five relaxation time constants of the emulated devices."""
OFF_DATASHEET = {"device.set_gain_siemens": 120e-6, "device.set_gate_vt_v": 0.55,
                 "device.set_exponent": 1.7, "device.reset_threshold_v": 0.65,
                 "device.reset_scale_v": 1.3}
"""A board whose devices are not the datasheet's: the SET curve needs ~0.15 V more gate for the
same conductance, one RESET removes ~half as much."""


def calibrate(emu, out: Path, smu: bool) -> tuple[dict, float]:
    command = [sys.executable, "-m", "imssa_hw.cli.main", "calibrate", "--port", emu.port,
               "--out", str(out), "--report", str(out / "report.json")]
    if smu:
        command += ["--smu", emu.smu_resource]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"calibrate failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads((out / "report.json").read_text()), time.monotonic() - started


def strong_reset(board: Board) -> None:
    for a in range(board.info.arrays):
        for _ in range(5):
            board.reset_pulses(a, 1.8, 5.0)


def vmm_error(cal, chain) -> dict:
    """The VMM calibration against the emulator's read chain: offsets in ADC codes (what the
    on-board loop feeds back of them each step) and relative gains."""
    if cal.vmm_offset_a is None:
        return {"vmm": None}
    offset = cal.vmm_offset_a / chain.lsb_a(cal.vmm_range_a) - chain.offset_codes
    gain = cal.vmm_gain / chain.gain - 1
    return {"vmm_offset_error_codes_rms": float(np.sqrt(np.mean(offset ** 2))),
            "vmm_offset_error_codes_max": float(np.abs(offset).max()),
            "vmm_gain_error_rms": float(np.sqrt(np.mean(gain ** 2)))}


def read_error(emu, cal, seed: int) -> dict:
    """Program a random held-out state, let it relax, compare reads with the truth."""
    rng = np.random.default_rng(seed + 1000)
    with Board.open(emu.port) as board:
        board.configure(v_read_v=cal.v_read_v, read_range_a=cal.read_range_a)
        shape = (board.info.arrays, board.info.rows, board.info.cols)
        for a in range(shape[0]):
            board.set_pulses(a, 3.0, rng.uniform(0.6, 1.5, shape[1:]))
        time.sleep(SETTLE_S)
        single = np.stack([board.read_array(a) for a in range(shape[0])])
        mean = np.stack([np.mean([board.read_array(a) for _ in range(4)], axis=0)
                         for a in range(shape[0])])
        truth = emu.truth_siemens()
        strong_reset(board)
    ok = (emu.state().devices.defect == HEALTHY) & (truth >= 5e-6)

    def err(g):
        return float(np.median(np.abs(g[ok] - truth[ok]) / truth[ok]))

    corrected = {name: np.stack([cal.correct_conductance(a, g[a]) for a in range(shape[0])])
                 for name, g in (("single", single), ("mean4", mean))}
    return {"devices": int(ok.sum()),
            "before_single": err(single), "after_single": err(corrected["single"]),
            "before_mean4": err(mean), "after_mean4": err(corrected["mean4"])}


def program(emu, cal, seed: int) -> dict:
    try:
        from imssa_hw.programming import program_targets
    except ImportError:
        return {"skipped": "the write-verify programmer (imssa_hw.programming) is not installed"}
    rng = np.random.default_rng(seed + 2000)
    levels = np.linspace(2e-6, 150e-6, 16)
    with Board.open(emu.port) as board:
        shape = (board.info.arrays, board.info.rows, board.info.cols)
        targets = levels[rng.integers(0, 16, shape)]
        used = np.ones(shape, bool)
        result = program_targets(board, targets, used, calibration=cal, strategy="adaptive",
                                 tolerance="2uS", off_siemens=2e-6)
    time.sleep(SETTLE_S)
    state = emu.state()
    truth = state.devices.conductance_siemens(time.time())
    working = state.devices.defect == HEALTHY
    r = result.report
    return {"mean_pulses_per_device": r["mean_pulses_per_device"],
            "p95_pulses_per_device": r["p95_pulses_per_device"],
            "yield_working_reported": r["yield_working"],
            "yield_true_2uS": float(np.mean(np.abs(truth - targets)[working] <= 2e-6)),
            "median_true_abs_error_siemens": float(np.median(np.abs(truth - targets)[working])),
            "wall_time_s": r["wall_time_s"]}


def scenario(tmp: Path, board: dict, seed: int, settings: dict, skip_program: bool,
             modes: tuple[str, ...]) -> dict:
    out = {"read_error": {}, "calibrate": {}}
    cals = {}
    for mode in modes:
        with running_emulator(tmp / f"emu-{mode}", smu=mode == "smu", settings=settings,
                              **board) as emu:
            report, wall = calibrate(emu, tmp / f"calib-{mode}", mode == "smu")
            cals[mode] = load_calibration(tmp / f"calib-{mode}")
            truth = emu.state()
            out["calibrate"][mode] = {
                "wall_time_s": round(wall, 2), "frames": report["frames"],
                "report_read_error_before": report["read_error_before"],
                "report_read_error_after": report["read_error_after"],
                "stuck_found": len(report["stuck_devices"]),
                "stuck_true": int((truth.devices.defect != HEALTHY).sum()),
                "gain_error_median": float(np.median(np.abs(
                    cals[mode].read_gain - truth.chain.gain))),
                "gain_error_before_median": float(np.median(np.abs(truth.chain.gain - 1))),
                **vmm_error(cals[mode], truth.chain)}
            out["read_error"][mode] = read_error(emu, cals[mode], seed)
            if mode == "smu" and not skip_program:
                out["program_with_calibration"] = program(emu, cals[mode], seed)
    if not skip_program:
        with running_emulator(tmp / "emu-plain", settings=settings, **board) as emu:
            out["program_without_calibration"] = program(emu, None, seed)
        with_cal = out["program_with_calibration"].get("mean_pulses_per_device")
        without = out["program_without_calibration"].get("mean_pulses_per_device")
        if with_cal is not None and without:
            out["pulse_ratio_with_vs_without"] = round(with_cal / without, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=1)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-program", action="store_true")
    parser.add_argument("--scenario", choices=("datasheet", "off_datasheet", "both"), default="both")
    args = parser.parse_args()
    board = {"arrays": args.arrays, "rows": args.rows, "cols": args.cols, "seed": args.seed}
    out = {"board": board}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.scenario in ("datasheet", "both"):
            out["datasheet"] = scenario(tmp / "datasheet", board, args.seed, {},
                                        args.skip_program, ("smu", "no_smu"))
        if args.scenario in ("off_datasheet", "both"):
            out["off_datasheet"] = scenario(tmp / "off", board, args.seed, OFF_DATASHEET,
                                            args.skip_program, ("smu",))
            out["off_datasheet"]["emulator_settings"] = OFF_DATASHEET
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
