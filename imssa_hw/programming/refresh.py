"""`refresh`: touch up a deployment programmed earlier (`imssa-hw program --refresh`): a device
whose averaged reads are still within the tolerance is verified without a pulse; only those
that drifted out of it are written again."""

from __future__ import annotations

import numpy as np

from imssa_hw.programming.adaptive import AdaptiveStrategy
from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.strategy import Plan

class RefreshStrategy(AdaptiveStrategy):
    """Adaptive write-verify over devices that were programmed before and may have drifted.

    A device not yet pulsed in this run has no inner band and needs no floor RESETs (anywhere
    within the tolerance is good enough: it is verified without a pulse) and is judged on
    `verify_reads` averaged reads unless its error is coarse; once pulsed it is tuned like
    `adaptive` does."""

    name = StrategyName.REFRESH

    def _init_state(self) -> None:
        super()._init_state()
        self.inner_tuned = self.inner.copy()
        self.inner = self.tol.copy()

    def _after_pulse(self, a, op, idx, v, gate, aux) -> None:
        super()._after_pulse(a, op, idx, v, gate, aux)
        rows, cols = np.unravel_index(idx, self.shape[1:])
        self.inner[a, rows, cols] = self.inner_tuned[a, rows, cols]

    def at_floor(self, a: int) -> np.ndarray:
        """As `adaptive` for the devices pulsed in this run; the others need no floor RESETs."""
        return super().at_floor(a) | (self.pulses[a] == 0)

    def plan(self, a: int, t: float) -> Plan:
        plan = super().plan(a, t)
        s = self.settings
        unsure = (self.pulses[a] == 0) & (self.n_after[a] < s.verify_reads) & ~self.coarse(a)
        plan.set_mask &= ~unsure
        plan.reset_mask &= ~unsure
        return plan
