"""The device book every write-verify strategy keeps, and what a strategy must do.

A strategy keeps one record per device (its status, pulses, reads since its last pulse, what it
learned about the device) and is driven by two events only, so that its whole state is a
function of the journal (a resumed run replays the journal through the same two methods):

    strategy.on_read(array, g_siemens, t)    # a batch read (corrected to true S); learns, moves statuses
    plan = strategy.plan(array, t)     # pure: the next batch SET and batch RESET (masks, voltages)
    strategy.on_pulse(array, op, idx, v, gate, aux, t)   # a batch pulse was (about to be) sent

Statuses: ACTIVE (being tuned), HOLD (inside the inner tolerance, waiting for relaxation and
more reads), VERIFIED (re-verified after the relaxation delay: final, never pulsed again), STUCK
(gave up: final), DONE (final without verification: cells that carry no signal once they are
off, and open-loop cells once measured), IDLE (arrays that are not programmed). The strategies
themselves are one module each (adaptive, ramp, open_loop, refresh); `strategies` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imssa_hw.board import PulseLimits
from imssa_hw.board.read_chain import read_sigma_siemens
from imssa_hw.calibration.curves import ResetCurve, SetCurve
from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.population import population_reset_curve, population_set_curve
from imssa_hw.programming.settings import ProgramSettings, Tolerance

ACTIVE, HOLD, VERIFIED, STUCK, DONE, IDLE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = ("active", "hold", "verified", "stuck", "done", "idle")
FINAL = (VERIFIED, STUCK, DONE, IDLE)
_LIVE = np.isin(np.arange(len(STATUS_NAMES)), FINAL, invert=True)
"""Per status code: not final (`live` looks it up: np.isin was a third of the strategy's time
per read of a 64x64 array)."""
PRECISE, OFF, NONE = 0, 1, 2
"""Kinds of cell: programmed to its target (the cells that matter), only brought to the off
state (cells that carry no signal), or not touched (arrays not programmed)."""
SET, RESET = "set", "reset"
OFF_ONLY_MAX_PULSES = 5
"""RESETs a cell that carries no signal gets at most before it is given up (and reported)."""
MIN_INNER_FRACTION = 0.25
"""The inner band never narrows below this fraction of the tolerance (`Strategy.inner`)."""


@dataclass
class Plan:
    """The next batch SET and batch RESET of one array: (rows, cols) masks and voltages, and
    per-device values the strategy wants back in `on_pulse` (kept in the journal)."""

    set_mask: np.ndarray
    v_set: np.ndarray
    gate_set: np.ndarray
    reset_mask: np.ndarray
    v_reset: np.ndarray
    gate_reset: np.ndarray
    aux_set: dict[str, np.ndarray] = field(default_factory=dict)
    aux_reset: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Plan:
        z = np.zeros(shape)
        return cls(np.zeros(shape, bool), z.copy(), z.copy(), np.zeros(shape, bool), z.copy(),
                   z.copy())

    def pulses(self) -> int:
        return int(self.set_mask.sum() + self.reset_mask.sum())


class Strategy:
    """The device book shared by every strategy; subclasses decide pulses and statuses."""

    name: StrategyName
    closed_loop = True

    def __init__(self, targets_siemens: np.ndarray, used: np.ndarray, arrays: list[int], *,
                 tolerance: Tolerance, settings: ProgramSettings, limits: PulseLimits,
                 set_curve: SetCurve | None = None, reset_curve: ResetCurve | None = None,
                 off_siemens: float | None = None, read_lsb_siemens: float = 0.0,
                 read_bias_rel: float = 0.0) -> None:
        self.targets = np.asarray(targets_siemens, dtype=float)
        shape = self.targets.shape
        self.shape = shape
        self.settings = settings.with_read_noise(None)
        self.limits = limits
        self.set_curve = set_curve or population_set_curve()
        self.reset_curve = reset_curve or population_reset_curve()
        self.read_lsb_siemens = float(read_lsb_siemens)
        self.read_bias_rel = float(read_bias_rel)
        programmed = np.zeros(shape[0], bool)
        programmed[list(arrays)] = True
        self.arrays = sorted(arrays)
        self.kind = np.where(programmed[:, None, None], np.where(used, PRECISE, OFF),
                             NONE).astype(np.int8)
        self.off_target = (np.zeros(shape, bool) if off_siemens is None
                           else self.targets <= off_siemens * (1 + 1e-9))
        self.tol = self.decision_tolerance(tolerance)
        # a device at an off target cannot be taken lower than where RESET leaves it: no
        # hysteresis band below the tolerance there. Elsewhere the band also leaves room for
        # the verify's margin for the read chain's bias (`_closed_loop_transition`): a device
        # left unpulsed inside it must be one the verify can accept, or it holds for ever (on
        # a quiet read chain above ~130 uS at 2 uS, where the margin outgrew 0.4 x tol)
        bias_margin = self.settings.verify_sigmas * self.read_bias_rel * (self.targets + self.tol)
        inner = np.minimum(self.tol * self.inner_fraction(),
                           np.maximum(self.tol - bias_margin, MIN_INNER_FRACTION * self.tol))
        self.inner = np.where(self.off_target, self.tol, inner)
        # strongest RESETs from within the band since the last SET, and how many an off-target
        # device needs before it counts as inside its band (`adaptive` finishes off devices at
        # their floor; 0: none)
        self.floor_resets = np.zeros(shape, np.int16)
        self.floor_needed = np.zeros(shape, np.int16)
        self.status = np.where(self.kind == NONE, IDLE, ACTIVE).astype(np.int8)
        self.pulses = np.zeros(shape, np.int32)
        self.set_pulses = np.zeros(shape, np.int32)
        self.t_pulse = np.full(shape, -np.inf)
        self.pending = np.zeros(shape, bool)
        self.g_before = np.full(shape, np.nan)
        self.last_op = np.zeros(shape, np.int8)  # 0 none, 1 SET, 2 RESET
        self.last_v = np.zeros(shape)
        self.last_gate = np.zeros(shape)
        self.n_after = np.zeros(shape, np.int32)
        self.mean_after = np.zeros(shape)
        self.settle_need = np.full(shape, settings.settle_s)
        self.verify_need = np.full(shape, settings.verify_delay_s)
        self.t_final = np.full(shape, np.nan)
        self.last_read = np.full(shape, np.nan)
        self.est = np.full(shape, np.nan)
        self.reads = 0
        self._init_state()

    # -- hooks for subclasses -----------------------------------------------------------------

    def decision_tolerance(self, tolerance: Tolerance) -> np.ndarray:
        return tolerance.of(self.targets)

    def inner_fraction(self) -> float:
        return self.settings.inner_fraction

    def max_pulses(self) -> int:
        return self.settings.max_pulses

    def _init_state(self) -> None:
        pass

    def _learn(self, a: int, first: np.ndarray, g: np.ndarray, t: float) -> None:
        pass

    def _after_pulse(self, a: int, op: str, idx: np.ndarray, v: np.ndarray, gate: np.ndarray,
                     aux: dict[str, np.ndarray]) -> None:
        pass

    def _transition(self, a: int, t: float) -> None:
        self._closed_loop_transition(a, t)

    def plan(self, a: int, t: float) -> Plan:
        raise NotImplementedError

    # -- events -------------------------------------------------------------------------------

    def on_read(self, a: int, g_siemens: np.ndarray, t: float) -> None:
        """A batch read of array `a` at time t, corrected to true conductances (NaN: not read)."""
        self.reads += 1
        live = self.live(a) & np.isfinite(g_siemens)
        first = live & self.pending[a]
        if first.any():
            # small changes relax less (facts: NeuRRAM; docs/emulator.md): shorter waits
            s = self.settings
            small = first & (np.abs(g_siemens - self.g_before[a]) <= s.small_change * self.tol[a])
            self.settle_need[a][small] = s.settle_small_s
            self.verify_need[a][small] = s.verify_delay_small_s
            self._learn(a, first, g_siemens, t)
            self.pending[a][first] = False
        age = t - self.t_pulse[a]
        settled = live & (age >= self.settle_need[a])
        self.n_after[a][settled] += 1
        weight = 1.0 / np.clip(self.n_after[a], 1, self.settings.average_reads)
        mean = self.mean_after[a]
        mean[settled] += (g_siemens[settled] - mean[settled]) * weight[settled]
        self.last_read[a][live] = g_siemens[live]
        est = np.where(self.n_after[a] > 0, mean, g_siemens)
        self.est[a][live] = est[live]
        self._transition(a, t)
        over = self.live(a) & (self.status[a] == ACTIVE) & (
            ((self.kind[a] == PRECISE) & (self.pulses[a] >= self.max_pulses()))
            | ((self.kind[a] == OFF) & (self.pulses[a] >= OFF_ONLY_MAX_PULSES)))
        self.status[a][over] = STUCK
        self.t_final[a][live & ~self.live(a)] = t

    def on_pulse(self, a: int, op: str, idx: np.ndarray, v: np.ndarray, gate: np.ndarray,
                 aux: dict[str, np.ndarray], t: float) -> None:
        """A batch pulse on the devices `idx` (flat indices) of array `a` at time t."""
        if len(idx) == 0:
            return
        rows, cols = np.unravel_index(idx, self.shape[1:])
        sel = (a, rows, cols)
        self.pulses[sel] += 1
        if op == SET:
            self.set_pulses[sel] += 1
        self.t_pulse[sel] = t
        self.pending[sel] = True
        self.g_before[sel] = self.est[sel]
        self.last_op[sel] = 1 if op == SET else 2
        if op == SET:
            self.floor_resets[sel] = 0
        else:  # a strongest RESET from within the band (from far above, it only gets there)
            near = self.est[sel] - self.targets[sel] <= self.tol[sel]
            self.floor_resets[sel] += (np.asarray(v) >= self.limits.v_reset_max - 1e-9) & near
        self.last_v[sel] = v
        self.last_gate[sel] = gate
        self.n_after[sel] = 0
        self.mean_after[sel] = 0.0
        self.settle_need[sel] = self.settings.settle_s
        self.verify_need[sel] = self.settings.verify_delay_s
        self._after_pulse(a, op, idx, np.asarray(v, float), np.asarray(gate, float), aux)

    # -- queries ------------------------------------------------------------------------------

    def live(self, a: int | slice = slice(None)) -> np.ndarray:
        return _LIVE[self.status[a]]

    def array_done(self, a: int) -> bool:
        return not self.live(a).any()

    def finished(self) -> bool:
        return not self.live().any()

    def sigma_read(self, g: np.ndarray) -> np.ndarray:
        """Uncertainty of one read of a device at conductance g, S."""
        g = np.abs(np.nan_to_num(np.asarray(g, float)))
        return read_sigma_siemens(g, self.settings.read_noise_rel, self.read_lsb_siemens)

    def sigma_est(self, a: int) -> np.ndarray:
        """Uncertainty of the estimate: the mean of n settled reads, or an exponential average
        over about `average_reads` once there are more (it follows slow drifts)."""
        n = np.maximum(self.n_after[a], 1)
        w = self.settings.average_reads
        factor = np.where(n < w, 1 / np.sqrt(n), np.sqrt(1 / (2 * w - 1)))
        return self.sigma_read(self.est[a]) * factor

    def coarse(self, a: int) -> np.ndarray:
        """Devices of array `a` surely off by more than coarse_factor x the tolerance: beyond it
        by coarse_sigmas x the uncertainty of their estimate."""
        s = self.settings
        margin = s.coarse_factor * self.tol[a] + s.coarse_sigmas * self.sigma_est(a)
        return np.abs(np.nan_to_num(self.error(a))) > margin

    def error(self, a: int | slice = slice(None)) -> np.ndarray:
        return self.est[a] - self.targets[a]

    def within(self, tol_siemens: np.ndarray | None = None) -> np.ndarray:
        """Devices whose estimate is within `tol_siemens` (default: the decision tolerance) of the
        target; a cell whose target is the off level counts when it is at or below it + tol."""
        tol = self.tol if tol_siemens is None else tol_siemens
        e = self.est - self.targets
        return np.isfinite(e) & (e <= tol) & (self.off_target | (e >= -tol))

    # -- shared pieces ------------------------------------------------------------------------

    def at_floor(self, a: int) -> np.ndarray:
        """Devices that had the strongest RESETs they need to rest where RESET leaves them."""
        return self.floor_resets[a] >= self.floor_needed[a]

    def _bands(self, a: int, outer: np.ndarray, inner: np.ndarray):
        e = self.error(a)
        off = self.off_target[a]
        in_inner = (e <= inner) & np.where(off, self.at_floor(a), e >= -inner)
        in_outer = (e <= outer) & (off | (e >= -outer))
        return e, in_inner, in_outer

    def _closed_loop_transition(self, a: int, t: float, sigmas: float | None = None) -> None:
        s = self.settings
        status, kind = self.status[a], self.kind[a]
        e, in_inner, in_outer = self._bands(a, self.tol[a], self.inner[a])
        precise = kind == PRECISE
        k = s.verify_sigmas if sigmas is None else sigmas
        # the residual column error of corrected reads does not average away
        bias = self.read_bias_rel * np.abs(np.nan_to_num(self.est[a]))
        spread = k * np.sqrt(self.sigma_est(a) ** 2 + bias ** 2)
        certain = in_inner & np.where(self.off_target[a], e + spread <= self.tol[a],
                                      np.abs(e) + spread <= self.tol[a])
        ready = ((t - self.t_pulse[a]) >= self.verify_need[a]) & (self.n_after[a] >= s.verify_reads)
        active, hold = status == ACTIVE, status == HOLD
        status[precise & active & in_inner] = HOLD
        status[precise & hold & ~in_outer] = ACTIVE
        hold = status == HOLD
        # averaging saturates (and cannot beat the ADC step at low conductance): after
        # 2 x average_reads settled reads inside the inner band, accept, keeping the margin
        # for the read chain's residual bias; an off-target device inside its band is at its
        # floor, which no pulse lowers: accept it without the margin (a quiet read of a few
        # codes never moves, and it would wait for ever)
        margin = np.abs(e) + np.minimum(k * bias, self.tol[a] - self.inner[a])
        patient = in_inner & (self.n_after[a] >= 2 * s.average_reads) & (
            self.off_target[a] | (margin <= self.tol[a]))
        status[precise & hold & ready & (certain | patient)] = VERIFIED
        status[precise & hold & ready & ~certain & ~in_inner] = ACTIVE
        off_only = (kind == OFF) & (status == ACTIVE)
        status[off_only & (e <= self.tol[a])] = DONE

    def _off_only_resets(self, a: int, plan: Plan) -> None:
        """Cells that carry no signal and are above their off target: one strong RESET each."""
        todo = (self.kind[a] == OFF) & (self.status[a] == ACTIVE) & np.isfinite(self.est[a])
        if not todo.any():
            return
        off = np.full(self.shape[1:], self.reset_curve.g_off_siemens)
        v = self.reset_curve.voltage_for(self.est[a], off)
        plan.reset_mask |= todo
        plan.v_reset[todo] = np.minimum(v[todo], self.limits.v_reset_max)
        plan.gate_reset[todo] = min(self.reset_curve.v_gate_v, self.limits.v_gate_max)
