"""What every calibration step needs of the board: averaged and corrected reads, strong RESETs,
SMU measurements, the characterization sample, and progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from imssa_hw.calibration.settings import CalibrationSettings
from imssa_hw.drivers.board_like import BoardLike, read_masked

Progress = Callable[[float, str], None]
"""progress(fraction of the work done so far in [0, 1], what is being done)."""

Sample = list[tuple[np.ndarray, np.ndarray]]
"""Per array, the (rows, cols) of the devices characterized."""


class ReadCorrection(Protocol):
    """A fitted read chain: true conductances from board reads."""

    def correct(self, array: int, g_read_siemens: np.ndarray, v_read_v: float,
                read_range_a: float) -> np.ndarray:
        ...


@dataclass
class Session:
    """One calibration's access to the board (and the SMU wired to its SMU port, if any)."""

    board: BoardLike
    smu: object | None
    settings: CalibrationSettings
    total_work: float
    progress: Progress
    done_work: float = 0.0
    smu_measurements: int = 0
    clock: Callable[[], float] = time.monotonic
    """The time the waits are counted on, s (`clock` and `sleep`: a board on virtual time,
    `emu://?clock=virtual`, takes `emulator.clock.VIRTUAL.now` and `.sleep`)."""
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        info = self.board.info
        self.shape = (info.arrays, info.rows, info.cols)
        self.limits = info.limits
        self.g_bottom_siemens, self.g_top_siemens = (float(g) for g in info.g_window_siemens)
        self.rng = np.random.default_rng(self.settings.seed)

    # -- progress -------------------------------------------------------------------------------

    def step(self, what: str, weight: float = 1.0) -> None:
        """Count `weight` units of work done and report progress."""
        self.done_work += weight
        self.progress(min(self.done_work / self.total_work, 1.0), what)

    def wait(self, seconds: float, what: str) -> None:
        """Sleep `seconds`, saying why."""
        self.progress(self.done_work / self.total_work, what)
        self.sleep(seconds)

    # -- reads ----------------------------------------------------------------------------------

    def read(self, array: int, n: int = 1, chain: ReadCorrection | None = None,
             mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean of `n` reads (S) of the whole array, or of the `mask`ed devices only (NaN
        elsewhere: fewer bytes on a slow link), corrected by `chain` if given, and the mask of
        devices saturated in any of them."""
        spec, config = self.board.info.spec.read_chain, self.board.config
        v = config.v_read_v
        total = np.zeros(self.shape[1:])
        saturated = np.zeros(self.shape[1:], bool)
        for _ in range(n):
            g = self.board.read_array(array) if mask is None else read_masked(self.board, array,
                                                                                mask)
            saturated |= spec.adc_saturated(g * v, config.read_range_a)
            total += g
        g = total / n
        if chain is not None:
            g = chain.correct(array, g, v, config.read_range_a)
        return g, saturated

    def sample_values(self, sample: Sample, n: int, chain: ReadCorrection) -> np.ndarray:
        """Corrected means of `n` reads of every sample device, arrays concatenated."""
        return np.concatenate([self.read(a, n, chain, self.sample_mask(cells))[0][cells]
                               for a, cells in enumerate(sample)])

    # -- pulses ---------------------------------------------------------------------------------

    @property
    def reset_gate_v(self) -> float:
        return min(self.settings.reset_gate_v, self.limits.v_gate_max)

    @property
    def strong_reset_v(self) -> float:
        return 0.9 * self.limits.v_reset_max

    def off_threshold(self, chain: ReadCorrection | None) -> float:
        """Reads below this count as RESET: corrected ones, or raw ones (column offsets are
        ~1 uS) when there is no read chain yet."""
        margin = 0.015 if chain is not None else 0.03
        return self.g_bottom_siemens + margin * self.g_top_siemens

    def strong_reset(self, array: int, mask: np.ndarray, chain: ReadCorrection | None,
                     min_pulses: int = 2, max_pulses: int = 10) -> np.ndarray:
        """RESET the masked devices: `min_pulses` on all, then more on those that still read
        above the off threshold (at most `max_pulses` each). Returns the devices that stayed
        above."""
        threshold = self.off_threshold(chain)
        pending = np.asarray(mask, bool).copy()
        for k in range(max_pulses):
            if not pending.any():
                break
            self.board.reset_pulses(array, self.strong_reset_v, self.reset_gate_v, pending)
            if k + 1 < min_pulses:
                continue
            g, _ = self.read(array, 1, chain, pending)
            pending &= g > threshold
        return pending

    def sample_mask(self, cells: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mask = np.zeros(self.shape[1:], bool)
        mask[cells] = True
        return mask

    # -- the SMU --------------------------------------------------------------------------------

    def smu_measure(self, array: int, devices: list[tuple[int, int]]) -> np.ndarray:
        """True conductances (S) of (row, col) devices of `array`, measured through the SMU route.
        The source stays at v_read_v between devices; the output is on only while measuring."""
        v = self.board.config.v_read_v
        out = np.empty(len(devices))
        try:  # an SMU that fails mid-way is a HardwareError (InstrumentError), exit 3
            self.smu.output_enabled = False
            self.smu.source_voltage_v = v
            for k, (row, col) in enumerate(devices):
                self.board.route_smu(array, row, col)
                out[k] = self.smu.measure_current_a() / v
            self.smu.output_enabled = False
            self.smu.source_voltage_v = 0.0
        finally:
            self.board.route_smu(None)
        self.smu_measurements += len(devices)
        return out
