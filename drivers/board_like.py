"""What calibration, programming and inference need of a board: the `BoardLike` protocol.

`drivers.board.Board` (the binary protocol over a serial link, real or emulated) implements it;
a second backend (e.g. an ArC TWO) implements the same methods and the rest of the toolchain
works unchanged. Everything is in SI units: voltages in V, conductances in S, currents in A.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import BoardConfig, BoardInfo


@runtime_checkable
class BoardLike(Protocol):
    """A crossbar board as the toolchain uses it."""

    info: BoardInfo
    """Identity, shape, safe limits, converters and ranges (from identify)."""
    config: BoardConfig
    """The present volatile settings: read voltage, ADC ranges, pulse width."""

    @property
    def frames_sent(self) -> int:
        """Requests sent so far, resends included (a cost counter for reports)."""

    def configure(self, v_read: float | None = None, read_range_a: float | None = None,
                  vmm_range_a: float | None = None,
                  pulse_width_s: float | None = None) -> BoardConfig:
        """Change some settings (None keeps one); returns the settings now in force."""

    def set_pulses(self, array: int, v_set: np.ndarray | float, v_gate: np.ndarray | float,
                   mask: np.ndarray | None = None) -> int:
        """One SET pulse on every masked device of `array`; returns how many were pulsed."""

    def reset_pulses(self, array: int, v_reset: np.ndarray | float, v_gate: np.ndarray | float,
                     mask: np.ndarray | None = None) -> int:
        """One RESET pulse on every masked device of `array`; returns how many were pulsed."""

    def read_array(self, array: int) -> np.ndarray:
        """Every device's conductance (rows, cols), S, as the read chain reports it."""

    def read_device(self, array: int, row: int, col: int) -> float:
        """One device's conductance, S."""

    def vmm(self, array: int, v_rows: np.ndarray) -> np.ndarray:
        """Column currents (cols,) A for row voltages (rows,) V."""

    def load_program(self, programs: list[LoopProgram]) -> None:
        """Load the on-board loop programs, run in this order each step."""

    def run_sequence(self, inputs: np.ndarray) -> np.ndarray:
        """Run the loaded loop: inputs (n_seq, n_steps, n_inputs) -> outputs (..., n_outputs) A."""

    def route_smu(self, array: int | None, row: int | None = None,
                  col: int | None = None) -> None:
        """Connect one device to the external SMU port; None disconnects it."""


@runtime_checkable
class ReadsDevices(Protocol):
    """A backend that can read some devices of an array for less than a whole-array read
    (`drivers.board.Board`: protocol 2's READ_DEVICES); optional, see `read_masked`."""

    def read_devices(self, array: int, mask: np.ndarray) -> np.ndarray:
        """Conductances (rows, cols) S of the masked devices, NaN elsewhere."""


def read_masked(board: BoardLike, array: int, mask: np.ndarray) -> np.ndarray:
    """Conductances (rows, cols) S of the masked devices of `array`, NaN elsewhere: through
    the backend's `read_devices` when it has one, else from a whole-array read."""
    if isinstance(board, ReadsDevices):
        return board.read_devices(array, mask)
    return np.where(mask, board.read_array(array), np.nan)
