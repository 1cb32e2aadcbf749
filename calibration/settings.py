"""The knobs of the calibration procedure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from imssa_hw.config import Config
from imssa_hw.errors import BadInput


SET_RAMP_V = tuple(np.round(np.arange(1.0, 3.5001, 0.25), 3).tolist())
"""SET voltages that step through the devices' switching thresholds, 1 .. 3.5 V in 0.25 V steps
(the calibration's threshold ramp and the self-test's marker SETs; each capped by the board's
limit)."""


@dataclass(frozen=True)
class CalibrationSettings(Config):
    """Knobs of the procedure (defaults suit the HPE-like emulated board)."""

    WHAT: ClassVar[str] = "calibration settings"

    reads: int = 4
    """Whole-array reads averaged for every reference read."""
    settle_s: float = 2.5
    """Wait after SETting devices high, before the read-chain measurements (relaxation)."""
    relax_delay_s: float = 2.5
    """Delay of the relaxation check."""
    sample: int = 512
    """Devices per array characterized (SET and RESET curves)."""
    smu_per_column: int = 2
    """Devices per column measured with the SMU for the gain fit, and again for validation."""
    sweep_points: int = 16
    """Read voltages of the offset sweep (from v_read_v down to v_read_v / 8, uniform in 1/v)."""
    set_gates_v: tuple[float, ...] = tuple(np.round(np.arange(0.5, 2.0001, 0.05), 3))
    """Gate voltages of the SET curve (to 2 V: devices weaker than the datasheet still reach
    the window top; write-verify never goes past the curve's last gate)."""
    reset_voltages_v: tuple[float, ...] | None = None
    """RESET voltages of the RESET curve; None: 0.3 V to the board's limit in 0.1 V steps."""
    reset_gate_v: float = 5.0
    """Gate voltage of every RESET (HPE: 5.0-5.5 V)."""
    high_gate_v: float = 2.0
    """Gate voltage of the SET-high reference state (saturates the 1T1R compliance)."""
    set_ramp_v: tuple[float, ...] = SET_RAMP_V
    """SET voltages of the switching-threshold ramp (clipped to the board's limit)."""
    seed: int = 0
    """Seeds the choice of sample and SMU devices."""

    def reset_curve_voltages_v(self, v_reset_max: float) -> np.ndarray:
        """The RESET curve's voltages: `reset_voltages_v`, or 0.3 V to `v_reset_max` in 0.1 V
        steps."""
        if self.reset_voltages_v is not None:
            return np.asarray(self.reset_voltages_v, float)
        return np.round(np.arange(0.3, v_reset_max + 1e-9, 0.1), 3)

    def check(self) -> None:
        if self.reads < 1 or self.sample < 1 or self.smu_per_column < 1 or self.sweep_points < 4:
            raise BadInput("reads, sample and smu-per-column must be >= 1, sweep_points >= 4")
        if self.settle_s < 0 or self.relax_delay_s < 0:
            raise BadInput("settle and relaxation delays must be >= 0 s")
