"""`adaptive`: per-device adaptive write-verify (the default strategy)."""

from __future__ import annotations

import numpy as np

from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.strategy import ACTIVE, PRECISE, STUCK, Plan, Strategy

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

    name = StrategyName.ADAPTIVE

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
        self.floor_needed[self.off_target] = s.off_floor_resets

    def _after_pulse(self, a, op, idx, v, gate, aux) -> None:
        rows, cols = np.unravel_index(idx, self.shape[1:])
        self.learn_later[a, rows, cols] = False
        if "aim_us" in aux:
            self.aim[a, rows, cols] = np.asarray(aux["aim_us"], float) * 1e-6

    def _learn(self, a: int, first: np.ndarray, g: np.ndarray, t: float) -> None:
        """The first read after a pulse: learn from clear responses, keep the rest for later."""
        s, lim = self.settings, self.limits
        before = self.g_before[a]
        threshold = 3 * self.sigma_read(np.fmax(g, before)) + self.read_lsb_siemens
        aim = np.nan_to_num(self.aim[a])
        was_set = first & (self.last_op[a] == 1)
        if was_set.any():
            expected = self.set_curve.g_at(self.last_gate[a])
            # landings on the curve's plateau (the device's fully-on cap) say nothing of r
            on_slope = expected < 0.97 * self.set_curve.g_siemens[-1]
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
        g_off = self.reset_curve.g_off_siemens
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
        span = np.maximum(before - curve.g_off_siemens, 1e-9)
        step = before - after
        fraction = step / span
        sigma_f = np.sqrt((s.reset_noise_rel * np.abs(step)) ** 2 + s.reset_noise_floor_siemens ** 2
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
            ready = active & (self.coarse(a) | self._settled(a, t, self.sigma_est(a)))
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
                aim = np.where(self.off_target[a], np.minimum(target, self.reset_curve.g_off_siemens),
                               aim)
                v = np.maximum(self._reset_voltage(a, self.est[a], aim), self.v_floor[a])
                plan.reset_mask = high
                plan.v_reset = np.where(high, np.clip(v, 0.0, lim.v_reset_max), 0.0)
                gate = min(self.reset_curve.v_gate_v, lim.v_gate_max)
                plan.gate_reset = np.where(high, gate, 0.0)
                plan.aux_reset = {"aim_us": aim * 1e6}
            self._floor_resets(a, plan, active & ~high & (e <= tol))
        self._off_only_resets(a, plan)
        return plan

    def _floor_resets(self, a: int, plan: Plan, in_band: np.ndarray) -> None:
        """Off-target devices inside their band but not yet at their floor: one RESET at the
        strongest voltage each, aimed at where the device is (a floor that does not move never
        counts towards stuck; a clear drop still teaches the device's RESET response)."""
        todo = in_band & self.off_target[a] & ~self.at_floor(a)
        if not todo.any():
            return
        lim = self.limits
        plan.reset_mask |= todo
        plan.v_reset[todo] = lim.v_reset_max
        plan.gate_reset[todo] = min(self.reset_curve.v_gate_v, lim.v_gate_max)
        here_us = self.est[a] * 1e6
        plan.aux_reset = {"aim_us": np.where(todo, here_us, plan.aux_reset.get("aim_us", here_us))}
