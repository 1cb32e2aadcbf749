"""The emulator's non-volatile state: one .npz file, replaced atomically after every change.

It holds every device's drawn parameters and present state and the read chain's per-column
errors, so it is also the ground truth for tests and benches (never part of the board protocol):

    from imssa_hw.emulator.state import load_state
    g_true = load_state("board.npz").devices.conductance_s(time.time())   # (arrays, rows, cols) S
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imssa_hw.emulator.crossbar import ReadChain
from imssa_hw.emulator.devices import Devices
from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path

STATE_FORMAT = 1


@dataclass(eq=False)
class EmulatorState:
    devices: Devices
    chain: ReadChain
    seed: int


def save_state(path: str | Path, state: EmulatorState) -> None:
    """Write `state` to `path` atomically (a crash leaves the old file or the new one)."""
    path = Path(path)
    arrays = {f"devices.{name}": value for name, value in state.devices.to_arrays().items()}
    arrays.update({"chain.gain": state.chain.gain, "chain.offset_codes": state.chain.offset_codes,
                   "chain.adc_bits": np.asarray(state.chain.adc_bits),
                   "format": np.asarray(STATE_FORMAT), "seed": np.asarray(state.seed)})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_state(path: str | Path) -> EmulatorState:
    """Read a state file written by `save_state`; raises BadInput when it is not one."""
    try:
        with np.load(path) as data:
            if int(data["format"]) != STATE_FORMAT:
                raise BadInput(f"{path}: state format {int(data['format'])}, expected {STATE_FORMAT}")
            devices = Devices.from_arrays({k.split(".", 1)[1]: data[k] for k in data.files
                                           if k.startswith("devices.")})
            chain = ReadChain(np.array(data["chain.gain"]), np.array(data["chain.offset_codes"]),
                              int(data["chain.adc_bits"]))
            return EmulatorState(devices, chain, int(data["seed"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInput(f"cannot read emulator state {path}: {exc}") from None
