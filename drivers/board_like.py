"""What calibration, programming and inference need of a board: the `BoardLike` protocol.

`drivers.board.Board` (the binary protocol over a serial link, real or emulated) implements it;
a second backend (e.g. an ArC TWO) implements the same methods and the rest of the toolchain
works unchanged. Everything is in SI units: voltages in V, conductances in S, currents in A.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from imssa_hw.board.params import SAME
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import BoardConfig, BoardInfo


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the operations every board offers (`board info` shows
    them; commands adapt to them or refuse with one line)."""

    on_board_loop: bool
    """`load_program` and `run_sequence` run the loop on the board (else: host mode only)."""
    smu_route: bool
    """`route_smu` connects a device to an external SMU (else: on-array calibration only)."""
    pulse_gate: Literal["per_device", "grouped", "none"]
    """How a pulse batch's gate voltages reach the devices: each its own in one request
    (per_device), one gate per group of devices pulsed together (grouped), not at all (none:
    a passive array, whose SET has no gate compliance)."""


FULL_CAPABILITIES = Capabilities(on_board_loop=True, smu_route=True, pulse_gate="per_device")
"""What our board protocol offers (`drivers.board.Board`)."""


def smallest_range(ranges_a: tuple[float, ...], range_a: float | None) -> float | None:
    """The smallest of `ranges_a` >= range_a (None stays None); ValueError when none is."""
    if range_a is None:
        return None
    fitting = [r for r in ranges_a if r >= range_a * (1 - SAME)]
    if not fitting:
        raise ValueError(f"no ADC range covers {range_a:g} A; the largest is "
                         f"{max(ranges_a):g} A")
    return min(fitting)


@runtime_checkable
class BoardLike(Protocol):
    """A crossbar board as the toolchain uses it."""

    info: BoardInfo
    """Identity, shape, safe limits, converters and ranges (from identify)."""
    config: BoardConfig
    """The present volatile settings: read voltage, ADC ranges, pulse width."""
    capabilities: Capabilities
    """What it can do beyond the common operations."""

    @property
    def frames_sent(self) -> int:
        """Requests sent so far, resends included (a cost counter for reports)."""

    def configure(self, v_read_v: float | None = None, read_range_a: float | None = None,
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
