"""`open_loop`: one shot without verify, the other baseline."""

from __future__ import annotations

import numpy as np

from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.strategy import DONE, PRECISE, RESET, Plan, Strategy

class OpenLoopStrategy(Strategy):
    """One shot without verify: a RESET at the top of the RESET curve (the off state), then one
    SET at the SET curve's gate for the target (cells whose target is off get the RESET only).
    The cells are then read once after the relaxation delay to measure the result."""

    name = StrategyName.OPEN_LOOP
    closed_loop = False

    def _init_state(self) -> None:
        self.phase = np.zeros(self.shape, np.int8)  # 0: nothing, 1: reset sent, 2: all sent

    def _after_pulse(self, a, op, idx, v, gate, aux) -> None:
        rows, cols = np.unravel_index(idx, self.shape[1:])
        sel = (a, rows, cols)
        if op == RESET:
            needs_set = (self.kind[sel] == PRECISE) & ~self.off_target[sel]
            self.phase[sel] = np.where(needs_set, 1, 2)
        else:
            self.phase[sel] = 2

    def _transition(self, a: int, t: float) -> None:
        measured = ((self.phase[a] == 2) & ((t - self.t_pulse[a]) >= self.settings.verify_delay_s)
                    & (self.n_after[a] >= 1))
        self.status[a][self.live(a) & measured] = DONE

    def plan(self, a: int, t: float) -> Plan:
        lim = self.limits
        plan = Plan.empty(self.shape[1:])
        live = self.live(a)
        first = live & (self.phase[a] == 0)
        if first.any():
            v = self.reset_curve.voltage_for(np.array([1.0]), np.array([0.0]))[0]
            plan.reset_mask = first
            plan.v_reset = np.where(first, min(v, lim.v_reset_max), 0.0)
            plan.gate_reset = np.where(first, min(self.reset_curve.v_gate_v, lim.v_gate_max), 0.0)
        second = live & (self.phase[a] == 1)
        if second.any():
            gate = self.set_curve.gate_for(self.targets[a])
            plan.set_mask = second
            plan.v_set = np.where(second, min(self.set_curve.v_set_v, lim.v_set_max), 0.0)
            plan.gate_set = np.where(second, np.clip(gate, 0.0, lim.v_gate_max), 0.0)
        return plan
