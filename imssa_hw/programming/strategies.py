"""Write-verify strategies: what to pulse next, from what the reads say.

A strategy keeps one record per device (its status, pulses, reads since its last pulse, what it
learned about the device) and is driven by two events only, so that its whole state is a
function of the journal (a resumed run replays the journal through the same two methods):

    strategy.on_read(array, g_s, t)    # a batch read (corrected to true S); learns, moves statuses
    plan = strategy.plan(array, t)     # pure: the next batch SET and batch RESET (masks, voltages)
    strategy.on_pulse(array, op, idx, v, gate, aux, t)   # a batch pulse was (about to be) sent

Statuses: ACTIVE (being tuned), HOLD (inside the inner tolerance, waiting for relaxation and
more reads), VERIFIED (re-verified after the relaxation delay: final, never pulsed again), STUCK
(gave up: final), DONE (final without verification: cells that carry no signal once they are
off, and open-loop cells once measured), IDLE (arrays that are not programmed).

Strategies:
- `adaptive`: per-device adaptive write-verify (first gate from the SET curve, per-device SET
  response ratio and RESET voltage offset learned from each response, inner/outer tolerance,
  settle and re-verify delays, averaged reads, bounded attempts).
- `ramp`: the HPE host software's incremental ramp (the baseline).
- `open_loop`: one RESET, then one SET at the curve's gate for the target; measured, not verified.
- `refresh`: `adaptive` for devices programmed earlier (`imssa-hw program --refresh`): a device
  whose averaged reads are still within the tolerance is verified without a pulse; only those
  that drifted out of it are written again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imssa_hw.calibration.curves import ResetCurve, SetCurve
from imssa_hw.programming.settings import Limits, Settings, Tolerance

ACTIVE, HOLD, VERIFIED, STUCK, DONE, IDLE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = ("active", "hold", "verified", "stuck", "done", "idle")
FINAL = (VERIFIED, STUCK, DONE, IDLE)
PRECISE, OFF, NONE = 0, 1, 2
"""Kinds of cell: programmed to its target (the cells that matter), only brought to the off
state (cells that carry no signal), or not touched (arrays not programmed)."""
SET, RESET = "set", "reset"
OFF_ONLY_MAX_PULSES = 5
"""RESETs a cell that carries no signal gets at most before it is given up (and reported)."""

# -- population curves used when there is no calibration ------------------------------------

POPULATION_SET_GAIN_S = 160e-6
POPULATION_SET_VT_V = 0.45
POPULATION_SET_EXPONENT = 1.5
POPULATION_G_ON_S = 180e-6
POPULATION_V_SET_V = 2.5
POPULATION_RESET_GATE_V = 5.0
POPULATION_RESET_VTH_V = 0.5
POPULATION_RESET_SCALE_V = 1.0
POPULATION_G_OFF_S = 1e-6


def population_set_curve() -> SetCurve:
    """Typical 1T1R HfOx/TaOx cells (facts: the HPE gate range 0.5 -> 1.4 V spans ~2-150 uS):
    G = 160 uS x (V_gate - 0.45 V)^1.5 up to ~180 uS (gates 0.45-2 V: weak devices need more
    than the HPE 1.4 V for the top of the window), switching at a 2.5 V SET pulse."""
    v = np.round(np.arange(0.45, 2.0001, 0.01), 4)
    g = np.minimum(POPULATION_SET_GAIN_S * (v - POPULATION_SET_VT_V) ** POPULATION_SET_EXPONENT,
                   POPULATION_G_ON_S)
    return SetCurve(v, g, POPULATION_V_SET_V)


def population_reset_curve() -> ResetCurve:
    """Gradual RESET at a 5 V gate: one 20 ns pulse removes 1 - exp(-((0.95 V - 0.5 V) / 1 V)^2)
    of (G - g_off): ~20 % at 1 V, ~60 % at 1.5 V (the HPE RESET ramp 0.3 -> 1.5 V)."""
    v = np.round(np.arange(0.0, 2.0001, 0.01), 4)
    v_eff = v * (1 - np.exp(-(POPULATION_RESET_GATE_V - 0.45) / 1.5))
    over = np.maximum(v_eff - POPULATION_RESET_VTH_V, 0.0) / POPULATION_RESET_SCALE_V
    return ResetCurve(v, 1 - np.exp(-over ** 2), POPULATION_RESET_GATE_V, POPULATION_G_OFF_S)


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

    name = "base"
    closed_loop = True

    def __init__(self, targets_s: np.ndarray, used: np.ndarray, arrays: list[int], *,
                 tolerance: Tolerance, settings: Settings, limits: Limits,
                 set_curve: SetCurve | None = None, reset_curve: ResetCurve | None = None,
                 off_s: float | None = None, read_lsb_s: float = 0.0,
                 read_bias_rel: float = 0.0) -> None:
        self.targets = np.asarray(targets_s, dtype=float)
        shape = self.targets.shape
        self.shape = shape
        self.settings = settings
        self.limits = limits
        self.set_curve = set_curve or population_set_curve()
        self.reset_curve = reset_curve or population_reset_curve()
        self.read_lsb_s = float(read_lsb_s)
        self.read_bias_rel = float(read_bias_rel)
        programmed = np.zeros(shape[0], bool)
        programmed[list(arrays)] = True
        self.arrays = sorted(arrays)
        self.kind = np.where(programmed[:, None, None], np.where(used, PRECISE, OFF),
                             NONE).astype(np.int8)
        self.off_target = (np.zeros(shape, bool) if off_s is None
                           else self.targets <= off_s * (1 + 1e-9))
        self.tol = self.decision_tolerance(tolerance)
        # a device at an off target cannot be taken lower than where RESET leaves it: no
        # hysteresis band below the tolerance there
        self.inner = np.where(self.off_target, self.tol, self.tol * self.inner_fraction())
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

    def on_read(self, a: int, g_s: np.ndarray, t: float) -> None:
        """A batch read of array `a` at time t, corrected to true conductances (NaN: not read)."""
        self.reads += 1
        live = self.live(a) & np.isfinite(g_s)
        first = live & self.pending[a]
        if first.any():
            # small changes relax less (facts: NeuRRAM; docs/emulator.md): shorter waits
            s = self.settings
            small = first & (np.abs(g_s - self.g_before[a]) <= s.small_change * self.tol[a])
            self.settle_need[a][small] = s.settle_small_s
            self.verify_need[a][small] = s.verify_delay_small_s
            self._learn(a, first, g_s, t)
            self.pending[a][first] = False
        age = t - self.t_pulse[a]
        settled = live & (age >= self.settle_need[a])
        self.n_after[a][settled] += 1
        weight = 1.0 / np.clip(self.n_after[a], 1, self.settings.average_reads)
        mean = self.mean_after[a]
        mean[settled] += (g_s[settled] - mean[settled]) * weight[settled]
        self.last_read[a][live] = g_s[live]
        est = np.where(self.n_after[a] > 0, mean, g_s)
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
        self.last_v[sel] = v
        self.last_gate[sel] = gate
        self.n_after[sel] = 0
        self.mean_after[sel] = 0.0
        self.settle_need[sel] = self.settings.settle_s
        self.verify_need[sel] = self.settings.verify_delay_s
        self._after_pulse(a, op, idx, np.asarray(v, float), np.asarray(gate, float), aux)

    # -- queries ------------------------------------------------------------------------------

    def live(self, a: int | slice = slice(None)) -> np.ndarray:
        return ~np.isin(self.status[a], FINAL)

    def array_done(self, a: int) -> bool:
        return not self.live(a).any()

    def finished(self) -> bool:
        return not self.live().any()

    def sigma_read(self, g: np.ndarray) -> np.ndarray:
        """Uncertainty of one read of a device at conductance g, S."""
        g = np.abs(np.nan_to_num(np.asarray(g, float)))
        return np.sqrt((self.settings.read_noise_rel * g) ** 2 + self.read_lsb_s ** 2 / 12)

    def sigma_est(self, a: int) -> np.ndarray:
        """Uncertainty of the estimate: the mean of n settled reads, or an exponential average
        over about `average_reads` once there are more (it follows slow drifts)."""
        n = np.maximum(self.n_after[a], 1)
        w = self.settings.average_reads
        factor = np.where(n < w, 1 / np.sqrt(n), np.sqrt(1 / (2 * w - 1)))
        return self.sigma_read(self.est[a]) * factor

    def error(self, a: int | slice = slice(None)) -> np.ndarray:
        return self.est[a] - self.targets[a]

    def within(self, tol_s: np.ndarray | None = None) -> np.ndarray:
        """Devices whose estimate is within `tol_s` (default: the decision tolerance) of the
        target; a cell whose target is the off level counts when it is at or below it + tol."""
        tol = self.tol if tol_s is None else tol_s
        e = self.est - self.targets
        return np.isfinite(e) & (e <= tol) & (self.off_target | (e >= -tol))

    # -- shared pieces ------------------------------------------------------------------------

    def _bands(self, a: int, outer: np.ndarray, inner: np.ndarray):
        e = self.error(a)
        off = self.off_target[a]
        in_inner = (e <= inner) & (off | (e >= -inner))
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
        # for the read chain's residual bias
        margin = np.where(self.off_target[a], e, np.abs(e)) + k * bias
        patient = in_inner & (self.n_after[a] >= 2 * s.average_reads) & (margin <= self.tol[a])
        status[precise & hold & ready & (certain | patient)] = VERIFIED
        status[precise & hold & ready & ~certain & ~in_inner] = ACTIVE
        off_only = (kind == OFF) & (status == ACTIVE)
        status[off_only & (e <= self.tol[a])] = DONE

    def _off_only_resets(self, a: int, plan: Plan) -> None:
        """Cells that carry no signal and are above their off target: one strong RESET each."""
        todo = (self.kind[a] == OFF) & (self.status[a] == ACTIVE) & np.isfinite(self.est[a])
        if not todo.any():
            return
        off = np.full(self.shape[1:], self.reset_curve.g_off_s)
        v = self.reset_curve.voltage_for(self.est[a], off)
        plan.reset_mask |= todo
        plan.v_reset[todo] = np.minimum(v[todo], self.limits.v_reset_max)
        plan.gate_reset[todo] = min(self.reset_curve.v_gate_v, self.limits.v_gate_max)


class AdaptiveStrategy(Strategy):
    """Adaptive per-device write-verify.

    SET aims a little above the target (RESET steps are finer than SET jumps) at the gate the
    SET curve gives for aim / r, r the device's learned response ratio (1 at first: the
    population or calibration curve). RESET maps each device's voltage axis onto the RESET
    curve's, u = u0 + shift + slope x (v - v0) (v0 = u0: where the curve starts to respond), with
    (shift, slope) learned per device by Bayesian linear regression from every response (a prior
    of the population's spread, observation noise from the read noise and the RESET step noise;
    a pulse without response is an observation at the threshold), and takes the v whose u gives
    the wanted fraction of (G - g_off). A clear response (beyond the read noise) is learned from
    the first read after the pulse; a small one from the averaged reads once the device has
    settled. A SET that does not switch raises the SET voltage, then the gate; pulses at the
    voltage limits without response count towards stuck. Coarse errors are corrected at once;
    fine ones once the device has settled and its averaged reads are precise enough (noisy
    high-conductance reads wait for more reads)."""

    name = "adaptive"

    def _init_state(self) -> None:
        shape = self.shape
        self.ratio = np.ones(shape)
        self.n_set_obs = np.zeros(shape, np.int16)
        s = self.settings
        self.r_shift = np.zeros(shape)
        self.r_slope = np.ones(shape)
        self.r_p11 = np.full(shape, s.reset_shift_sigma_v ** 2)
        self.r_p12 = np.zeros(shape)
        self.r_p22 = np.full(shape, s.reset_slope_sigma ** 2)
        self.n_reset_obs = np.zeros(shape, np.int16)
        self.v_floor = np.zeros(shape)
        self.u0 = float(self._u_for(np.array([0.001]))[0])
        self.v_set = np.full(shape, min(self.set_curve.v_set_v, self.limits.v_set_max))
        self.no_response = np.zeros(shape, np.int16)
        self.aim = np.full(shape, np.nan)
        self.learn_later = np.zeros(shape, bool)
        # gates known to land too low / too high (bisection when the model leaves the bracket)
        self.gate_lo = np.zeros(shape)
        self.gate_hi = np.full(shape, np.inf)

    def _after_pulse(self, a, op, idx, v, gate, aux) -> None:
        rows, cols = np.unravel_index(idx, self.shape[1:])
        self.learn_later[a, rows, cols] = False
        if "aim_us" in aux:
            self.aim[a, rows, cols] = np.asarray(aux["aim_us"], float) * 1e-6

    def _learn(self, a: int, first: np.ndarray, g: np.ndarray, t: float) -> None:
        """The first read after a pulse: learn from clear responses, keep the rest for later."""
        s, lim = self.settings, self.limits
        before = self.g_before[a]
        threshold = 3 * self.sigma_read(np.fmax(g, before)) + self.read_lsb_s
        aim = np.nan_to_num(self.aim[a])
        was_set = first & (self.last_op[a] == 1)
        if was_set.any():
            expected = self.set_curve.g_at(self.last_gate[a])
            # landings on the curve's plateau (the device's fully-on cap) say nothing of r
            on_slope = expected < 0.97 * self.set_curve.g_s[-1]
            rose = was_set & (g - before > threshold)
            learn = rose & on_slope
            obs = np.log(np.clip(g / np.maximum(expected, 1e-9), 0.05, 20))
            w = np.where(self.n_set_obs[a] == 0, 1.0, 0.5)
            learned = np.exp((1 - w) * np.log(self.ratio[a]) + w * obs)
            self.ratio[a][learn] = np.clip(learned[learn], 0.05, 5.0)
            self.n_set_obs[a][learn] += 1
            margin = 2 * self.tol[a]
            # a SET that did not rise the device landed at most where the device already was
            landed_low = (rose & (g < aim - margin)) | (was_set & ~rose & (before < aim))
            landed_high = rose & (g > aim + margin)
            self.gate_lo[a][landed_low] = np.maximum(self.gate_lo[a], self.last_gate[a])[landed_low]
            self.gate_hi[a][landed_high] = np.minimum(self.gate_hi[a], self.last_gate[a])[landed_high]
            self.no_response[a][rose] = 0
            # no clear rise: a small expected rise may just have landed below G (SET noise):
            # aim a little higher; a large one means the pulse did not switch: raise V_set,
            # then the gate, and at the limits count towards stuck
            expected_rise = aim - before
            silent = was_set & ~rose & (expected_rise > 0)
            big = silent & (expected_rise > np.maximum(0.2 * aim, 5 * threshold))
            top_gate = self.last_gate[a] >= min(self.set_curve.v_gate_v[-1], lim.v_gate_max) - 2e-3
            at_limit = big & (self.v_set[a] >= lim.v_set_max - 1e-9) & top_gate
            self.no_response[a][big] += 1
            raise_v = big & (self.v_set[a] < lim.v_set_max - 1e-9)
            self.v_set[a][raise_v] = np.minimum(self.v_set[a][raise_v] + 0.5, lim.v_set_max)
            higher = silent & ~raise_v
            step = np.maximum(2 * self.inner[a], 0.03 * aim)
            nudge = np.where(big, 0.7, aim / np.maximum(aim + step, 1e-12))
            self.ratio[a][higher] = np.clip(self.ratio[a][higher] * nudge[higher], 0.05, 5.0)
            self.status[a][at_limit & (self.no_response[a] >= s.max_no_response)] = STUCK
        was_reset = first & (self.last_op[a] == 2)
        if was_reset.any():
            dropped = was_reset & (before - g > threshold)
            self._learn_reset(a, dropped, before, g, self.sigma_read(g))
            self.learn_later[a][was_reset & ~dropped] = True

    def _u_for(self, fraction: np.ndarray) -> np.ndarray:
        """The RESET curve's voltage for a fraction removed (the population's voltage axis)."""
        g_off = self.reset_curve.g_off_s
        f = np.clip(np.asarray(fraction, float), 0.0, 1.0)
        return self.reset_curve.voltage_for(np.ones_like(f), 1.0 - f * (1.0 - g_off))

    def _reset_voltage(self, a: int, g_now: np.ndarray, g_aim: np.ndarray) -> np.ndarray:
        """Each device's RESET voltage to go from g_now to g_aim, through its learned mapping."""
        u = self.reset_curve.voltage_for(g_now, g_aim)
        slope = np.maximum(self.r_slope[a], 0.3)
        return self.u0 + (u - self.u0 - self.r_shift[a]) / slope

    def _learn_reset(self, a: int, sel: np.ndarray, before: np.ndarray, after: np.ndarray,
                     sigma_after: np.ndarray) -> None:
        """Update (shift, slope) of the devices `sel` from RESET responses before -> after."""
        if not sel.any():
            return
        s, curve = self.settings, self.reset_curve
        span = np.maximum(before - curve.g_off_s, 1e-9)
        step = before - after
        fraction = step / span
        sigma_f = np.sqrt((s.reset_noise_rel * np.abs(step)) ** 2 + s.reset_noise_floor_s ** 2
                          + 2 * sigma_after ** 2) / span
        # a response too small to tell from noise: the device sits near its threshold at v
        censored = fraction <= np.maximum(2 * sigma_f, 0.002)
        f_obs = np.where(censored, 0.002, np.clip(fraction, 0.002, 0.97))
        u_obs = self._u_for(f_obs)
        slope_f = (curve.fraction_at(u_obs + 0.01) - curve.fraction_at(u_obs - 0.01)) / 0.02
        sigma_u = np.where(censored, np.maximum(self._u_for(np.minimum(2 * sigma_f + 0.002, 1.0))
                                                - u_obs, 0.01),
                           sigma_f / np.maximum(slope_f, 1e-3)) + 0.005
        informative = sel & (fraction < 0.97)
        x = self.last_v[a] - self.u0
        p11, p12, p22 = self.r_p11[a], self.r_p12[a], self.r_p22[a]
        ph0, ph1 = p11 + p12 * x, p12 + p22 * x
        gain0 = ph0 / (ph0 + ph1 * x + sigma_u ** 2)
        gain1 = ph1 / (ph0 + ph1 * x + sigma_u ** 2)
        innovation = u_obs - (self.u0 + self.r_shift[a] + self.r_slope[a] * x)
        m = informative
        self.r_shift[a][m] += (gain0 * innovation)[m]
        self.r_slope[a][m] += (gain1 * innovation)[m]
        self.r_p11[a][m] = (p11 - gain0 * ph0)[m]
        self.r_p12[a][m] = (p12 - gain0 * ph1)[m]
        self.r_p22[a][m] = (p22 - gain1 * ph1)[m]
        self.n_reset_obs[a][m] += 1
        self.no_response[a][m & ~censored] = 0
        # no visible response: whatever the model says, the next RESET goes higher
        silent = sel & censored
        self.v_floor[a][silent] = self.last_v[a][silent] + s.reset_step_v
        self.v_floor[a][sel & ~censored] = 0.0

    def _transition(self, a: int, t: float) -> None:
        self._learn_settled(a, t)
        self._closed_loop_transition(a, t)

    def _learn_settled(self, a: int, t: float) -> None:
        """RESETs without a clear response, judged on the averaged reads once settled."""
        todo = self.learn_later[a] & self.live(a)
        if not todo.any():
            return
        s = self.settings
        sigma = self.sigma_est(a)
        ready = todo & self._settled(a, t, sigma)
        if not ready.any():
            return
        before, now = self.g_before[a], self.est[a]
        drop, wanted = before - now, before - np.nan_to_num(self.aim[a])
        weak = ready & (drop < 0.3 * wanted) & (wanted > 2 * sigma)
        at_limit = weak & (self.last_v[a] >= self.limits.v_reset_max - 2e-3)
        self.no_response[a][at_limit] += 1
        self.status[a][at_limit & (self.no_response[a] >= s.max_no_response)] = STUCK
        self._learn_reset(a, ready, before, now, sigma)
        self.learn_later[a][ready] = False

    def _settled(self, a: int, t: float, sigma: np.ndarray) -> np.ndarray:
        """Devices whose averaged reads can judge a fine step: settled and precise enough."""
        precise_enough = (sigma <= self.inner[a] / 2) | (self.n_after[a] >= 16)
        age = t - self.t_pulse[a]
        return (age >= self.settle_need[a]) & (self.n_after[a] >= 1) & precise_enough

    def plan(self, a: int, t: float) -> Plan:
        s, lim = self.settings, self.limits
        shape = self.shape[1:]
        plan = Plan.empty(shape)
        active = (self.status[a] == ACTIVE) & (self.kind[a] == PRECISE) & np.isfinite(self.est[a])
        if active.any():
            e = self.error(a)
            tol, inner, target = self.tol[a], self.inner[a], self.targets[a]
            coarse = np.abs(e) > s.coarse_factor * tol
            ready = active & (coarse | self._settled(a, t, self.sigma_est(a)))
            low = ready & ~self.off_target[a] & (e < -inner)
            high = ready & (e > inner)
            if low.any():
                aim = target + s.set_margin * tol
                gate = self.set_curve.gate_for(aim / self.ratio[a])
                # the ratio model fails near the fully-on plateau: bisect the known bracket
                lo, hi = self.gate_lo[a], self.gate_hi[a]
                known_lo, known_hi = lo > 0, np.isfinite(hi)
                step = s.gate_step_v
                above = known_hi & (gate >= hi - 1e-3)
                below = known_lo & (gate <= lo + 1e-3)
                bracket = known_lo & known_hi & (hi > lo)
                gate = np.where(above, np.where(bracket, (lo + hi) / 2, hi - step), gate)
                gate = np.where(below & ~above, np.where(bracket, (lo + hi) / 2, lo + step), gate)
                plan.set_mask = low
                plan.v_set = np.where(low, self.v_set[a], 0.0)
                plan.gate_set = np.where(low, np.clip(gate, 0.0, lim.v_gate_max), 0.0)
                plan.aux_set = {"aim_us": aim * 1e6}
            if high.any():
                # a step too small to tell from noise teaches nothing: step at least
                # reset_min_step inner tolerances (landing a little low is still inside)
                aim = np.minimum(target + s.reset_margin * tol,
                                 self.est[a] - s.reset_min_step * inner)
                aim = np.where(self.off_target[a], np.minimum(target, self.reset_curve.g_off_s),
                               aim)
                v = np.maximum(self._reset_voltage(a, self.est[a], aim), self.v_floor[a])
                plan.reset_mask = high
                plan.v_reset = np.where(high, np.clip(v, 0.0, lim.v_reset_max), 0.0)
                gate = min(self.reset_curve.v_gate_v, lim.v_gate_max)
                plan.gate_reset = np.where(high, gate, 0.0)
                plan.aux_reset = {"aim_us": aim * 1e6}
        self._off_only_resets(a, plan)
        return plan


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

    name = "ramp"
    TOLERANCE_S = 4e-6
    V_SET = (1.0, 3.5, 1.0)
    GATE = (0.5, 1.4, 0.05)
    V_RESET = (0.3, 1.5, 0.05)
    RESET_GATE_V = 5.0
    MAX_OVERFLOWS = 5
    MAX_STEPS = 200

    def decision_tolerance(self, tolerance: Tolerance) -> np.ndarray:
        return np.full(self.targets.shape, self.TOLERANCE_S)

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


class OpenLoopStrategy(Strategy):
    """One shot without verify: a RESET at the top of the RESET curve (the off state), then one
    SET at the SET curve's gate for the target (cells whose target is off get the RESET only).
    The cells are then read once after the relaxation delay to measure the result."""

    name = "open_loop"
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


class RefreshStrategy(AdaptiveStrategy):
    """Adaptive write-verify over devices that were programmed before and may have drifted.

    A device not yet pulsed in this run has no inner band (anywhere within the tolerance is
    good enough: it is verified without a pulse) and is judged on `verify_reads` averaged reads
    unless its error is coarse; once pulsed it is tuned like `adaptive` does."""

    name = "refresh"

    def _init_state(self) -> None:
        super()._init_state()
        self.inner_tuned = self.inner.copy()
        self.inner = self.tol.copy()

    def _after_pulse(self, a, op, idx, v, gate, aux) -> None:
        super()._after_pulse(a, op, idx, v, gate, aux)
        rows, cols = np.unravel_index(idx, self.shape[1:])
        self.inner[a, rows, cols] = self.inner_tuned[a, rows, cols]

    def plan(self, a: int, t: float) -> Plan:
        plan = super().plan(a, t)
        s = self.settings
        unsure = ((self.pulses[a] == 0) & (self.n_after[a] < s.verify_reads)
                  & (np.abs(np.nan_to_num(self.error(a))) <= s.coarse_factor * self.tol[a]))
        plan.set_mask &= ~unsure
        plan.reset_mask &= ~unsure
        return plan


STRATEGIES = {cls.name: cls for cls in (AdaptiveStrategy, RampStrategy, OpenLoopStrategy,
                                        RefreshStrategy)}


def make_strategy(name: str, *args, **kwargs) -> Strategy:
    from imssa_hw.errors import BadInput

    if name not in STRATEGIES:
        raise BadInput(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](*args, **kwargs)
