"""`ramp`: the HPE host software's incremental ramp, the baseline."""

from __future__ import annotations

import numpy as np

from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.settings import Tolerance
from imssa_hw.programming.strategy import ACTIVE, PRECISE, SET, STUCK, Plan, Strategy

class RampStrategy(Strategy):
    """The HPE host software's incremental ramp (Li et al. 2018; facts.md), as the baseline.

    Too low: SET at the device's current (V_set, V_gate); V_set then steps 1 -> 2 -> 3 V, and
    past 3.5 V it restarts at 1 V with the gate 0.05 V higher (0.5 -> 1.4 V); a gate past 1.4 V
    is a ramp overflow and the gate restarts at 0.5 V. Too high: RESET at the device's current
    V_reset (0.3 -> 1.5 V in 0.05 V steps, gate 5 V); past 1.5 V an overflow, restart at 0.3 V.
    A change of direction restarts the ramp of the new direction (after a RESET the SET ramp
    restarts at 1 V one gate step lower, so that it does not land where it overshot). Tolerance
    4 uS (in and out: the run's --tolerance does not change the baseline), one pulse per device
    per step, at most 200 steps (iterations), stuck after 5 overflows. The same re-verify after
    the relaxation delay as the other strategies (no read averaging)."""

    name = StrategyName.RAMP
    TOLERANCE_SIEMENS = 4e-6
    V_SET = (1.0, 3.5, 1.0)
    GATE = (0.5, 1.4, 0.05)
    V_RESET = (0.3, 1.5, 0.05)
    RESET_GATE_V = 5.0
    MAX_OVERFLOWS = 5
    MAX_STEPS = 200

    def decision_tolerance(self, tolerance: Tolerance) -> np.ndarray:
        return np.full(self.targets.shape, self.TOLERANCE_SIEMENS)

    def inner_fraction(self) -> float:
        return 1.0

    def max_pulses(self) -> int:
        return self.MAX_STEPS

    def _init_state(self) -> None:
        self.r_vset = np.full(self.shape, self.V_SET[0])
        self.r_gate = np.full(self.shape, self.GATE[0])
        self.r_vreset = np.full(self.shape, self.V_RESET[0])
        self.overflows = np.zeros(self.shape, np.int16)
        self.direction = np.zeros(self.shape, np.int8)
        lim = self.limits
        self.set_top = min(self.V_SET[1], lim.v_set_max)
        self.gate_top = min(self.GATE[1], lim.v_gate_max)
        self.reset_top = min(self.V_RESET[1], lim.v_reset_max)

    def _next(self, a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V_set, gate, V_reset) of each device's next pulse (direction restarts included)."""
        after_reset = self.direction[a] == 2
        v_set = np.where(after_reset, self.V_SET[0], self.r_vset[a])
        gate = np.where(after_reset, np.maximum(self.r_gate[a] - self.GATE[2], self.GATE[0]),
                        self.r_gate[a])
        v_reset = np.where(self.direction[a] == 1, self.V_RESET[0], self.r_vreset[a])
        return v_set, gate, v_reset

    def _after_pulse(self, a, op, idx, v, gate, aux) -> None:
        rows, cols = np.unravel_index(idx, self.shape[1:])
        sel = (a, rows, cols)
        if op == SET:
            v_next = v + self.V_SET[2]
            wrap = v_next > self.set_top + 1e-9
            g_next = np.where(wrap, gate + self.GATE[2], gate)
            over = g_next > self.gate_top + 1e-9
            self.r_vset[sel] = np.where(wrap, self.V_SET[0], v_next)
            self.r_gate[sel] = np.where(over, self.GATE[0], g_next)
            self.overflows[sel] += over
            self.direction[sel] = 1
        else:
            v_next = v + self.V_RESET[2]
            over = v_next > self.reset_top + 1e-9
            self.r_vreset[sel] = np.where(over, self.V_RESET[0], v_next)
            self.overflows[sel] += over
            self.direction[sel] = 2

    def _transition(self, a: int, t: float) -> None:
        self._closed_loop_transition(a, t, sigmas=0.0)
        stuck = (self.status[a] == ACTIVE) & (self.overflows[a] >= self.MAX_OVERFLOWS)
        self.status[a][stuck] = STUCK

    def plan(self, a: int, t: float) -> Plan:
        plan = Plan.empty(self.shape[1:])
        active = (self.status[a] == ACTIVE) & (self.kind[a] == PRECISE) & np.isfinite(self.est[a])
        if active.any():
            e = self.error(a)
            low = active & ~self.off_target[a] & (e < -self.inner[a])
            high = active & (e > self.inner[a])
            v_set, gate, v_reset = self._next(a)
            plan.set_mask, plan.reset_mask = low, high
            plan.v_set = np.where(low, v_set, 0.0)
            plan.gate_set = np.where(low, gate, 0.0)
            plan.v_reset = np.where(high, v_reset, 0.0)
            plan.gate_reset = np.where(high, min(self.RESET_GATE_V, self.limits.v_gate_max), 0.0)
        self._off_only_resets(a, plan)
        return plan
