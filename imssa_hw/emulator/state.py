"""The emulator's non-volatile state: one .npz file, replaced atomically after every change.

It holds every device's drawn parameters and present state and the read chain's per-column
errors, so it is also the ground truth for tests and benches (never part of the board protocol):

    from imssa_hw.emulator.state import load_state
    state = load_state("board.npz")
    g_true = state.devices.conductance_siemens(state.now())   # (arrays, rows, cols) S

It also holds the emulator's clock (emulator/clock.py), so that `now()` is the running emulator's
time even when it is accelerated.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from imssa_hw.emulator.clock import EmulatorClock
from imssa_hw.emulator.crossbar import ReadChain
from imssa_hw.emulator.devices import Devices
from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path, signals_held

STATE_FORMAT = 3
"""3 since 0.20.0: the devices' float fields stacked in one entry (2: one entry a field; 1:
before retention drift and the emulator's clock)."""
STACKED, STACKED_NAMES = "devices.stacked", "devices.stacked_names"
"""The entries of the devices' per-device float fields, (fields, arrays, rows, cols), and their
names in that order: a save costs mostly per entry, and it runs after every change."""


@dataclass(eq=False)
class EmulatorState:
    devices: Devices
    chain: ReadChain
    seed: int
    clock: EmulatorClock
    saved_wall_s: float | None = None
    """Wall-clock time of the save this state was read from (None: never saved)."""

    def now(self) -> float:
        """The emulator's time now, Unix seconds (runs faster than the wall with a time scale)."""
        return self.clock.now()

    def truth_siemens(self) -> np.ndarray:
        """Every device's true conductance now, (arrays, rows, cols) S."""
        return self.devices.conductance_siemens(self.now())


def save_state(path: str | Path, state: EmulatorState) -> None:
    """Write `state` to `path` atomically (a crash leaves the old file or the new one; a signal
    is handled once the file is whole)."""
    path = Path(path)
    device_arrays = state.devices.to_arrays()
    stacked = [name for name, value in device_arrays.items()
               if value.ndim == 3 and value.dtype == np.float64]
    arrays = {f"devices.{name}": value for name, value in device_arrays.items()
              if name not in stacked}
    arrays.update({STACKED_NAMES: np.array(stacked),
                   "chain.gain": state.chain.gain, "chain.offset_codes": state.chain.offset_codes,
                   "chain.adc_bits": np.asarray(state.chain.adc_bits),
                   "format": np.asarray(STATE_FORMAT), "seed": np.asarray(state.seed),
                   "clock": np.asarray([state.clock.origin_wall_s, state.clock.origin_emulated_s,
                                        state.clock.time_scale, state.clock.wall()])})
    with signals_held(), atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name, value in arrays.items():  # as np.savez writes them
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
        with archive.open(f"{STACKED}.npy", "w", force_zip64=True) as member:  # no stacked copy
            parts = [np.ascontiguousarray(device_arrays[name]) for name in stacked]
            np.lib.format.write_array_header_1_0(member, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)),
                "fortran_order": False, "shape": (len(parts), *parts[0].shape)})
            for part in parts:
                member.write(part.data)


def load_state(path: str | Path, wall: Callable[[], float] = time.time) -> EmulatorState:
    """Read a state file written by `save_state`, its clock reading the wall clock `wall` (the
    one the board ran on: `clock.CLOCKS`); raises BadInput when it is not one (a file of
    another format included)."""
    try:
        with np.load(path) as data:
            version = int(data["format"])
            if version != STATE_FORMAT:
                raise BadInput(f"{path}: emulator state format {version} (this imssa-hw reads "
                               f"format {STATE_FORMAT}) is not read: start the emulator with a "
                               f"fresh state (remove the file or give --state another one)")
            arrays = {k.split(".", 1)[1]: data[k] for k in data.files
                      if k.startswith("devices.") and k not in (STACKED, STACKED_NAMES)}
            arrays.update(zip(data[STACKED_NAMES].tolist(), data[STACKED]))
            missing = [f"devices.{f.name}" for f in fields(Devices) if f.name not in arrays]
            if missing:
                raise BadInput(f"{path}: not an emulator state of this imssa-hw (no "
                               f"{', '.join(missing)}): start the emulator with a fresh state")
            origin_wall, origin_emulated, scale, saved_wall = (float(v) for v in data["clock"])
            clock = EmulatorClock(origin_wall, origin_emulated, scale, wall)
            chain = ReadChain(np.array(data["chain.gain"]), np.array(data["chain.offset_codes"]),
                              int(data["chain.adc_bits"]))
            return EmulatorState(Devices.from_arrays(arrays), chain, int(data["seed"]), clock,
                                 saved_wall)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInput(f"cannot read emulator state {path}: {exc}") from None
