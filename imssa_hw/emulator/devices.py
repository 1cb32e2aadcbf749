"""1T1R device physics: the per-device population (`Devices`) and the pulse model (`DeviceModel`).

SET: above a per-device threshold voltage the device jumps to the conductance allowed by the gate
(compliance), G = gain * (v_gate - vt)^exponent with per-device gain, vt and exponent, plus
cycle-to-cycle noise; a SET never lowers G. RESET removes a fraction of (G - g_off) that grows with
the effective reset voltage and the pulse width, with noise proportional to the step. Every change
is followed by relaxation towards G + delta with time constant tau, and by retention drift that
grows with log time: G += drift * log(1 + age / onset) / log(1 + reference_age / onset), `drift`
drawn per change (the shift reached at the reference age, e.g. one day). Stuck devices ignore
pulses; a device that exceeds its endurance freezes where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from imssa_hw.emulator.profile import Profile

HEALTHY, STUCK_ON, STUCK_OFF, WORN_OUT = 0, 1, 2, 3
"""Values of `Devices.defect`."""


@dataclass(eq=False)
class Devices:
    """Every device of the board, arrays of shape (arrays, rows, cols)."""

    # drawn once per board (device-to-device variation)
    g_off_siemens: np.ndarray
    g_on_max_siemens: np.ndarray
    set_gain_siemens: np.ndarray
    set_gate_vt_v: np.ndarray
    set_exponent: np.ndarray
    set_threshold_v: np.ndarray
    reset_threshold_v: np.ndarray
    reset_scale_v: np.ndarray
    endurance_pulses: np.ndarray
    # present state
    defect: np.ndarray
    """HEALTHY, STUCK_ON, STUCK_OFF or WORN_OUT."""
    g_final_siemens: np.ndarray
    """Conductance once relaxed."""
    relax_siemens: np.ndarray
    """Relaxation still to come at t_pulse_s: G(t) = g_final - relax * exp(-(t - t_pulse) / tau)."""
    t_pulse_s: np.ndarray
    """Wall-clock time (Unix seconds) of the last change."""
    pulses: np.ndarray
    """Switching pulses received (pulses above threshold on healthy devices)."""
    drift_siemens: np.ndarray
    """Retention drift reached `drift_reference_age_s` after the last change, S (signed)."""
    relax_tau_s: float
    drift_onset_s: float
    """Age at which retention drift starts to show (the log-time knee), s."""
    drift_reference_age_s: float
    """Age at which a device has drifted by its `drift_siemens`, s."""

    def conductance_siemens(self, now: float, array: int | slice = slice(None)) -> np.ndarray:
        """True conductance at emulated time `now` (Unix seconds), S."""
        age = np.maximum(now - self.t_pulse_s[array], 0.0)
        relaxed = self.g_final_siemens[array] - self.relax_siemens[array] * np.exp(-age / self.relax_tau_s)
        return np.maximum(relaxed + self.drift_siemens[array] * self.drift_fraction(age), 0.0)

    def drift_fraction(self, age_s: np.ndarray | float) -> np.ndarray:
        """Fraction of the reference-age drift reached at `age_s`: log(1 + age/onset) / log(1 +
        reference/onset)."""
        return np.log1p(np.asarray(age_s) / self.drift_onset_s) / np.log1p(
            self.drift_reference_age_s / self.drift_onset_s)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Devices:
        values = {f.name: np.array(arrays[f.name]) for f in fields(cls)}
        for name in ("relax_tau_s", "drift_onset_s", "drift_reference_age_s"):
            values[name] = float(values[name])
        return cls(**values)


class DeviceModel:
    """Draws a device population and applies SET and RESET pulses to it."""

    def __init__(self, profile: Profile) -> None:
        self.device = profile.device
        self.relaxation = profile.relaxation
        self.retention = profile.retention
        self.defects = profile.defects
        self.endurance = profile.endurance
        self.window_max_siemens = profile.spec.window.g_max_siemens

    def draw(self, shape: tuple[int, int, int], rng: np.random.Generator) -> Devices:
        """A fresh board: every healthy device in its high-resistance state, fully relaxed."""
        p, d = self.device, self.defects

        def normal(mean: float, sigma: float) -> np.ndarray:
            return mean + sigma * rng.standard_normal(shape)

        def lognormal(median: float, sigma_log: float) -> np.ndarray:
            return median * np.exp(sigma_log * rng.standard_normal(shape))

        g_off = np.maximum(normal(p.g_off_siemens, p.g_off_sigma_siemens), 0.2 * p.g_off_siemens)
        u = rng.random(shape)
        defect = np.where(u < d.stuck_on_fraction, STUCK_ON,
                          np.where(u < d.stuck_on_fraction + d.stuck_off_fraction, STUCK_OFF, HEALTHY))
        g = np.select([defect == STUCK_ON, defect == STUCK_OFF],
                      [np.maximum(normal(d.stuck_on_g_siemens, d.stuck_on_sigma_siemens), 0.0),
                       np.full(shape, d.stuck_off_g_siemens)], g_off)
        return Devices(
            g_off_siemens=g_off,
            g_on_max_siemens=np.maximum(normal(p.g_on_max_siemens, p.g_on_max_sigma_siemens), g_off),
            set_gain_siemens=lognormal(p.set_gain_siemens, p.set_gain_sigma_log),
            set_gate_vt_v=normal(p.set_gate_vt_v, p.set_gate_vt_sigma_v),
            set_exponent=np.maximum(normal(p.set_exponent, p.set_exponent_sigma), 0.1),
            set_threshold_v=np.maximum(normal(p.set_threshold_v, p.set_threshold_sigma_v), 0.1),
            reset_threshold_v=np.maximum(normal(p.reset_threshold_v, p.reset_threshold_sigma_v), 0.05),
            reset_scale_v=lognormal(p.reset_scale_v, p.reset_scale_sigma_log),
            endurance_pulses=lognormal(self.endurance.median_pulses, self.endurance.sigma_log),
            defect=defect.astype(np.int8), g_final_siemens=g, relax_siemens=np.zeros(shape),
            t_pulse_s=np.zeros(shape), pulses=np.zeros(shape, np.int64), drift_siemens=np.zeros(shape),
            relax_tau_s=self.relaxation.tau_s, drift_onset_s=self.retention.onset_s,
            drift_reference_age_s=self.retention.reference_age_s)

    def set(self, devices: Devices, array: int, v_set: np.ndarray, v_gate: np.ndarray,
            mask: np.ndarray, now: float, rng: np.random.Generator) -> None:
        """One SET pulse on the masked devices of `array`."""
        p, a = self.device, array
        g_now = devices.conductance_siemens(now, a)
        fired = mask & (devices.defect[a] == HEALTHY) & (v_set >= devices.set_threshold_v[a])
        drive = np.maximum(v_gate - devices.set_gate_vt_v[a], 0.0)
        target = np.minimum(devices.set_gain_siemens[a] * drive ** devices.set_exponent[a], devices.g_on_max_siemens[a])
        sigma = np.maximum(p.set_c2c_sigma_siemens + p.set_c2c_slope * target, p.set_c2c_min_siemens)
        g_new = np.clip(target + sigma * rng.standard_normal(target.shape),
                        devices.g_off_siemens[a], devices.g_on_max_siemens[a])
        self._commit(devices, a, fired, fired & (g_new > g_now), g_now, g_new, now, rng)

    def reset(self, devices: Devices, array: int, v_reset: np.ndarray, v_gate: np.ndarray,
              mask: np.ndarray, width_s: float, now: float, rng: np.random.Generator) -> None:
        """One RESET pulse on the masked devices of `array`."""
        p, a = self.device, array
        g_now = devices.conductance_siemens(now, a)
        v_eff = v_reset * (1 - np.exp(-np.maximum(v_gate - p.reset_gate_vt_v, 0.0) / p.reset_gate_char_v))
        over = np.maximum(v_eff - devices.reset_threshold_v[a], 0.0) / devices.reset_scale_v[a]
        fraction = 1 - np.exp(-(width_s / p.pulse_width_ref_s) * over ** p.reset_exponent)
        step = np.maximum(g_now - devices.g_off_siemens[a], 0.0) * fraction
        noise = (p.reset_c2c_rel * step + p.reset_c2c_floor_siemens) * rng.standard_normal(step.shape)
        g_new = np.clip(g_now - step + noise, 0.0, devices.g_on_max_siemens[a])
        fired = mask & (devices.defect[a] == HEALTHY) & (over > 0)
        self._commit(devices, a, fired, fired, g_now, g_new, now, rng)

    def _commit(self, devices: Devices, a: int, fired: np.ndarray, changed: np.ndarray,
                g_now: np.ndarray, g_new: np.ndarray, now: float, rng: np.random.Generator) -> None:
        """Store the new conductances with fresh relaxation and retention shifts; count pulses,
        wear out."""
        r, k = self.relaxation, self.retention
        x = np.clip(g_new / self.window_max_siemens, 0.0, 1.0)
        mid_window = 4 * x * (1 - x)  # both spreads are largest mid-window (NeuRRAM)
        sigma = (r.sigma_min_siemens + (r.sigma_max_siemens - r.sigma_min_siemens) * mid_window) \
            * np.minimum(1.0, np.abs(g_new - g_now) / r.full_change_siemens)
        g_final = np.maximum(g_new + sigma * rng.standard_normal(g_new.shape), 0.0)
        drift = (k.sigma_min_siemens + (k.sigma_max_siemens - k.sigma_min_siemens) * mid_window) \
            * rng.standard_normal(g_new.shape)
        devices.g_final_siemens[a][changed] = g_final[changed]
        devices.relax_siemens[a][changed] = (g_final - g_new)[changed]
        devices.drift_siemens[a][changed] = drift[changed]
        devices.t_pulse_s[a][changed] = now
        devices.pulses[a][fired] += 1
        devices.defect[a][fired & (devices.pulses[a] >= devices.endurance_pulses[a])] = WORN_OUT
