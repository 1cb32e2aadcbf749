"""Write-verify benchmark on an emulated board over a pty; prints JSON.

    python bench/program.py [--rows 64 --cols 64 --arrays 1 --seed 0 --targets-seed 1]
                            [--layout full|digits]
                            [--strategies adaptive,ramp,open_loop] [--calibration measured|oracle|none]
                            [--profile emulator-default|emulator-harsh|FILE]
                            [--baud 921600,12e6 [--protocols 1,2]]

One 64x64 array of the default emulated devices (`--profile`: another emulator profile;
`--arrays 8`: the eight arrays of board-multi, as `imssa-hw emulate --profile emulator-multi`),
random 4-bit targets (16 levels over the board-default window 1-150 uS, level 0 = the off
level), every cell used. `--layout digits`: the cells of the ten-digit model instead (2 layers
of 64 kernels of N = 8, one 9x18 tile each, random 4-bit kernel levels through the compiler's
mapping: about 80 % of a tile's cells off), the tiles packed densely (side by side, spread
evenly over the arrays); the other cells are not used (off targets, RESET only when above).
Each strategy runs on a fresh emulator started from the same seed (the
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
device, iterations, frames, wall time), where the time went (`time_breakdown_s`: waiting for
the board's replies to reads and to pulses, sleeping until a read can change something, and the
rest, the host's own work: strategy, journal, encoding), the journal's size (`journal_mb`), and
the truth from the emulator's state file, relaxed (`true_yield_healthy`: healthy devices within
the tolerance of their target; `true_yield_working`: the same over the devices the programmer
did not give up as stuck; both over the cells used).
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

from imssa_hw.board import load_board_profile
from imssa_hw.drivers.board import Board
from imssa_hw.drivers.framing import PROTOCOL_VERSION
from imssa_hw.emulator.devices import HEALTHY
from imssa_hw.emulator.process import running_emulator
from imssa_hw.model.config import DIGITS_MODEL
from imssa_hw.model.mapping import assemble_levels, tile_conductances, tile_layout
from imssa_hw.programming import ProgramSettings, parse_tolerance, program_targets
from imssa_hw.programming.strategy import STUCK


def random_targets(shape: tuple[int, int, int], seed: int, profile) -> np.ndarray:
    """4-bit levels 0..15 over the profile window (G_min + L * dG)."""
    window = profile.conductance
    levels = np.random.default_rng(seed).integers(0, 16, shape)
    return window.g_min_siemens + levels * window.dg(4)


def digits_targets(shape: tuple[int, int, int], seed: int,
                   profile) -> tuple[np.ndarray, np.ndarray]:
    """The ten-digit model's cells: (targets S, used) with one 9x18 tile of random 4-bit kernel
    levels per kernel (the compiler's mapping, differential columns), the tiles side by side
    (no spare lines) and spread evenly over the arrays; the other cells off and not used."""
    arrays, rows, cols = shape
    h, n, layers = DIGITS_MODEL["h"], DIGITS_MODEL["n"], DIGITS_MODEL["n_layers"]
    layout = tile_layout(n, profile.differential)
    tile_rows, tile_cols = layout.shape
    per_array = (rows // tile_rows) * (cols // tile_cols)
    kernels = h * layers
    if kernels > arrays * per_array:
        raise SystemExit(f"{kernels} tiles of {tile_rows}x{tile_cols} do not fit {arrays} arrays "
                         f"of {rows}x{cols} ({per_array} each)")
    rng = np.random.default_rng(seed)
    top = 2 ** 4 - 1
    parts = [rng.integers(-top, top + 1, (kernels, n // 2)) for _ in range(6)]
    levels = assemble_levels(np.zeros((kernels, n + 1, n + 1), np.int64), *parts)
    targets = np.full(shape, profile.conductance.g_min_siemens)
    used = np.zeros(shape, bool)
    counts = np.full(arrays, kernels // arrays) + (np.arange(arrays) < kernels % arrays)
    array_of = np.repeat(np.arange(arrays), counts)
    slot = np.arange(kernels) - np.repeat(np.cumsum(counts) - counts, counts)
    for k in range(kernels):
        r0 = (slot[k] // (cols // tile_cols)) * tile_rows
        c0 = (slot[k] % (cols // tile_cols)) * tile_cols
        cells = (array_of[k], slice(r0, r0 + tile_rows), slice(c0, c0 + tile_cols))
        targets[cells] = tile_conductances(levels[k], layout, profile.conductance, 4)
        used[cells] = True
    return targets, used


class TimedBoard:
    """A Board whose reads and pulses add the seconds they wait for the board to `spent`."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.spent = {"board_reads": 0.0, "board_pulses": 0.0}

    def __getattr__(self, name: str):
        return getattr(self.board, name)

    def _timed(self, kind: str, method, *args):
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.spent[kind] += time.perf_counter() - started

    def read_devices(self, *args) -> np.ndarray:
        return self._timed("board_reads", self.board.read_devices, *args)

    def read_array(self, *args) -> np.ndarray:
        return self._timed("board_reads", self.board.read_array, *args)

    def set_pulses(self, *args) -> int:
        return self._timed("board_pulses", self.board.set_pulses, *args)

    def reset_pulses(self, *args) -> int:
        return self._timed("board_pulses", self.board.reset_pulses, *args)


def measured_calibration(workdir: Path, seed: int, shape: tuple[int, int, int],
                         emulator_profile: str | None) -> tuple[Path, float]:
    out = workdir / "calib"
    started = time.monotonic()
    arrays, rows, cols = shape
    with running_emulator(workdir / "emulator-calibrate", arrays=arrays, rows=rows, cols=cols,
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
    info = board.info
    return Calibration(info.board_id, info.arrays, info.rows, info.cols, chain.gain,
                       chain.offset_codes * info.read_lsb_siemens(board.config), None, None, {},
                       v_read_v=board.config.v_read_v, read_range_a=board.config.read_range_a,
                       reference=Reference.SMU,  # the emulator's own chain: as true as an SMU
                       spec=info.spec)


BASELINES = {"adaptive-0.8.2": ("adaptive",
                                ProgramSettings(coarse_sigmas=0.0, read_noise_rel=0.01))}
"""Strategies as they were, by the name `--strategies` takes: (strategy, settings)."""


def run_strategy(name: str, workdir: Path, args, targets: np.ndarray, used: np.ndarray,
                 calib_dir: Path | None, profile, baud: float = 0.0,
                 protocol: int = PROTOCOL_VERSION) -> dict:
    from imssa_hw.calibration.data import load_calibration

    tol = parse_tolerance(args.tolerance)
    strategy, settings = BASELINES.get(name, (name, None))
    run = f"{name}-{baud:g}-v{protocol}"
    journal = workdir / f"journal-{run}.jsonl"
    slept = [0.0]

    def sleep(seconds: float) -> None:
        slept[0] += seconds
        time.sleep(seconds)

    with running_emulator(workdir / f"emulator-{run}", arrays=args.arrays, rows=args.rows,
                          cols=args.cols, seed=args.seed, baud=baud, profile=args.profile,
                          settings={"firmware.protocol_version": protocol}) as emu:
        with Board.open(emu.port) as opened:
            board = TimedBoard(opened)
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
                                     journal=journal, sleep=sleep)
            elapsed = time.monotonic() - started
            moved = board.stats.bytes_sent + board.stats.bytes_received - moved
        devices = emu.state().devices
    truth = devices.g_final_siemens  # relaxed: what the devices settle at
    healthy = (devices.defect == HEALTHY) & used
    tol_siemens = tol.of(targets)
    within = np.abs(truth - targets) <= tol_siemens
    working = (result.status != STUCK) & used
    r = result.report
    keys = ("yield_working", "yield_all", "mean_pulses_per_device", "p95_pulses_per_device",
            "max_pulses_per_device", "iterations", "frames", "wall_time_s", "unfinished",
            "verified", "devices", "working", "within_tolerance")
    out = {k: r[k] for k in keys}
    host_s = elapsed - sum(board.spent.values()) - slept[0]
    out.update({
        "arrays": args.arrays,
        "devices_used": int(used.sum()),
        "time_breakdown_s": {**{k: round(v, 3) for k, v in board.spent.items()},
                             "waits": round(slept[0], 3), "host": round(host_s, 3)},
        "journal_mb": round(journal.stat().st_size / 1e6, 2),
        "protocol": protocol,
        "bytes_moved": moved,
        "mean_abs_error_us": round(r["mean_abs_error_siemens"] * 1e6, 4),
        "stuck": len(r["stuck_devices"]),
        "command_time_s": round(elapsed, 3),
        "true_yield_healthy": round(float(within[healthy].mean()), 6),
        "true_yield_working": round(float(within[working].mean()), 6),
        "true_misses_working": int((working & ~within).sum()),
        "true_mean_abs_error_us": round(float(np.abs(truth - targets)[working].mean() * 1e6), 4),
        "defects_in_emulator": int((used & ~healthy).sum()),
        "stuck_that_are_defects": int((used & ~healthy & ~working).sum()),
    })
    return out


def link_rates(workdir: Path, args, targets: np.ndarray, used: np.ndarray,
               calib_dir: Path | None, profile, rates: list[float], protocol: int) -> dict:
    """The adaptive strategy over the pty and at each rate, on a board of `protocol`."""
    runs = {f"{rate:g}": run_strategy("adaptive", workdir, args, targets, used, calib_dir,
                                      profile, rate, protocol) for rate in [0.0, *rates]}
    pty = runs["0"]["wall_time_s"]
    for run in runs.values():
        run["time_over_pty"] = round(run["wall_time_s"] / pty, 3)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--arrays", type=int, default=1,
                        help="arrays of the emulated board (8: board-multi's)")
    parser.add_argument("--layout", choices=("full", "digits"), default="full",
                        help="full: every cell used, random 4-bit targets; digits: the cells of "
                             "the ten-digit model's 128 tiles of 9x18, packed densely")
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
    profile = load_board_profile("board-default")
    shape = (args.arrays, args.rows, args.cols)
    if args.layout == "digits":
        targets, used = digits_targets(shape, args.targets_seed, profile)
    else:
        targets, used = random_targets(shape, args.targets_seed, profile), np.ones(shape, bool)
    result: dict = {"arrays": args.arrays, "rows": args.rows, "cols": args.cols,
                    "layout": args.layout, "devices_used": int(used.sum()), "seed": args.seed,
                    "targets_seed": args.targets_seed, "tolerance": args.tolerance,
                    "calibration": args.calibration,
                    "profile": args.profile or "emulator-default"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        workdir.mkdir(parents=True, exist_ok=True)
        calib_dir = None
        if args.calibration == "measured":
            calib_dir, seconds = measured_calibration(workdir, args.seed, shape, args.profile)
            result["calibration_time_s"] = round(seconds, 2)
        for name in filter(None, args.strategies.split(",")):
            result[name] = run_strategy(name, workdir, args, targets, used, calib_dir, profile)
        rates = [float(b) for b in args.baud.split(",") if float(b) > 0]
        if rates:
            result["link_rates"] = {
                f"v{protocol}": link_rates(workdir, args, targets, used, calib_dir, profile,
                                           rates, protocol)
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
