"""Emulated boards for tests: small geometries, settings that switch non-idealities off, and
`emu://` URLs for boards in the test's own process."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from imssa_hw.drivers.board import Board
from imssa_hw.emulator.clock import CLOCKS, VIRTUAL_WAITS
from imssa_hw.emulator.crossbar import Crossbar, ReadChain
from imssa_hw.emulator.devices import HEALTHY, DeviceModel
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.emulator.protocol_emu import board_from_url
from imssa_hw.emulator.state import EmulatorState, load_state, save_state

from support.models import board_profile

SMALL_BOARD = {"arrays": 2, "rows": 8, "cols": 8}
"""The default geometry of `emulated_board`: two 8x8 arrays keep tests fast."""
NOISELESS = {"read_chain.read_noise_rel": 0, "read_chain.tia_gain_sigma": 0,
             "read_chain.tia_offset_sigma_fs": 0}
"""Settings that make reads and VMMs exact up to the ADC and DAC steps."""
STILL = {"relaxation.sigma_min_siemens": 0, "relaxation.sigma_max_siemens": 0,
         "retention.sigma_min_siemens": 0, "retention.sigma_max_siemens": 0}
"""Settings under which a device keeps the conductance a pulse gave it (no relaxation, no drift)."""
EXACT_CHAIN = {"read_chain.tia_gain_sigma": 0, "read_chain.tia_offset_sigma_fs": 0}
"""No per-column read errors: reads need no calibration."""
FAST_DEVICES = {"relaxation.tau_s": 0.1}
"""Devices that relax 5x faster than the default, so that `support.programming.FAST` suffices."""

NEEDS_PTY = pytest.mark.skipif(not hasattr(os, "openpty"),
                               reason="a pty (POSIX); without one the emulator serves TCP")
"""For the tests of pty transports themselves (what pty links do); the rest of the suite runs
on the emulator's TCP port where there is no pty."""


def emu_url(state, seed: int, arrays: int = 2, rows: int = 8, cols: int = 8, **settings) -> str:
    """An `emu://` port: an emulated board in this process, its state kept in `state`."""
    sets = "".join(f"&set={key}={value}" for key, value in settings.items())
    return f"emu://?seed={seed}&arrays={arrays}&rows={rows}&cols={cols}&state={state}{sets}"


PROCESS_ONLY = ("corrupt_rate", "drop_rate", "latency_s", "reset_rate", "baud", "smu", "tcp")
"""`start_emulator` options that only an emulator process has: link faults, line speed, the
SMU and TCP services."""


@dataclass(frozen=True)
class InProcessBoard:
    """An emulated board served in the test's own process (`emu://`, the same firmware) with
    the test interface of an `EmulatorProcess`: its port, its state file and ground truth."""

    port: str
    state_path: Path
    clock: str = "wall"
    """The wall clock it runs on (`emulator.clock.CLOCKS`)."""

    def state(self) -> EmulatorState:
        """The board's non-volatile state, as its last request left it."""
        return load_state(self.state_path, CLOCKS[self.clock])

    def truth_siemens(self) -> np.ndarray:
        """True conductances now, (arrays, rows, cols) S."""
        return self.state().truth_siemens()

    def stop(self) -> None:
        """Nothing runs between requests: nothing to stop."""

    def age(self, seconds: float) -> None:
        """Let `seconds` of the board's time pass at once between two commands, as for a board
        left alone that long (its devices age from their last change)."""
        state = self.state()
        state.clock = replace(state.clock,
                              origin_emulated_s=state.clock.origin_emulated_s + seconds)
        save_state(self.state_path, state)


ON_VIRTUAL_TIME = dict(zip(("clock", "sleep"), VIRTUAL_WAITS))
"""`program_targets` options for a board on virtual time (`emulated_board(virtual_time=True)`):
its waits move this process's virtual clock instead of sleeping."""


def in_process_board(workdir: Path, seed: int = 0, arrays: int = 2, rows: int = 8, cols: int = 8,
                     settings: dict | None = None, time_scale: float = 1.0,
                     virtual_time: bool = False) -> InProcessBoard:
    """An `emu://` board whose state lives in workdir/board.npz, drawn now (so that its state
    and truth can be read before the first request). `virtual_time`: the board's devices age on
    this process's `VIRTUAL` clock (emulator/clock.py), which only the waits of a run given
    `ON_VIRTUAL_TIME` move: no real time passes, and the outcome does not depend on the
    machine's speed."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "board.npz"
    port = (emu_url(state, seed, arrays, rows, cols, **(settings or {}))
            + f"&time_scale={time_scale!r}&clock={'virtual' if virtual_time else 'wall'}")
    board_from_url(port)  # draws the devices and saves them
    return InProcessBoard(port, state, "virtual" if virtual_time else "wall")


def healthy(emu) -> np.ndarray:
    """Which devices of an emulated board are neither stuck nor worn out."""
    return emu.state().devices.defect == HEALTHY


def script(board: Board) -> None:
    """Programming steps on an 8x8 array whose outcome depends only on the commands executed."""
    rng = np.random.default_rng(7)
    board.configure(pulse_width_s=5e-8)
    for _ in range(6):
        board.set_pulses(0, 3.0, rng.uniform(0.5, 1.3, (8, 8)), rng.random((8, 8)) < 0.5)
        board.read_array(0)
        board.read_devices(0, rng.random((8, 8)) < 0.2)
        board.reset_pulses(0, rng.uniform(0.5, 1.2, (8, 8)), 5.0, rng.random((8, 8)) < 0.5)
        board.vmm(0, np.full(8, 0.1))


def exact_crossbar(targets: np.ndarray) -> Crossbar:
    """The default emulated board's analog core with every device exactly on its target, an
    ideal TIA and no read noise: only the converters remain."""
    profile = load_emulator_profile(None, {"read_chain.read_noise_rel": 0.0})
    rng = np.random.default_rng(0)
    devices = DeviceModel(profile).draw(targets.shape, rng)
    devices.g_final_siemens, devices.defect = targets.copy(), np.zeros_like(devices.defect)
    chain = ReadChain(np.ones(targets.shape[::2]), np.zeros(targets.shape[::2]),
                      profile.spec.read_chain.adc_bits)
    return Crossbar(devices, chain, profile.spec.read_chain, profile.read_chain, rng)


def deploy_and_infer(model, seed: int, arrays: int = 2, rows: int = 32, cols: int = 32):
    """`model` (a Checkpoint) calibrated for, compiled to, programmed on and run through an
    emulated board of `seed` in this process, on virtual time (its devices relax by the waits
    alone, and no real time passes), on its own test split: the InferenceResult. The board:
    board-default's devices and read chain on `arrays` arrays of `rows` x `cols` (two 32x32
    arrays hold a small model at a sixth of the three 64x64 arrays' calibration)."""
    import imssa_hw as hw

    with hw.open_board(f"emu://?seed={seed}&clock=virtual&arrays={arrays}&rows={rows}"
                       f"&cols={cols}") as board:
        run = hw.calibrate(board, waits=VIRTUAL_WAITS)
        dep = hw.compile(model, board_profile(arrays, rows, cols), calibration=run)
        hw.program(board, dep, calibration=run, waits=VIRTUAL_WAITS)
        return hw.infer(board, dep, model, calibration=run)
