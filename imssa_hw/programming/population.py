"""Device-population curves for the first pulses when there is no calibration.

Typical 1T1R HfOx/TaOx cells, from the shipped `profiles/programming-population.toml` (its
comments give the sources): a SET curve G(V_gate) and a RESET curve (fraction of G - g_off
removed by one pulse vs V_reset).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources

import numpy as np

from imssa_hw.calibration.curves import ResetCurve, SetCurve



@lru_cache(maxsize=1)
def population() -> dict[str, float]:
    """The shipped population values (SI units)."""
    text = (resources.files("imssa_hw") / "profiles" / "programming-population.toml").read_text()
    return {key: float(value) for key, value in tomllib.loads(text)["population"].items()}


def population_set_curve() -> SetCurve:
    """G = set_gain * (V_gate - set_gate_vt)^set_exponent up to g_on, for gates from set_gate_vt
    to 2 V (weak devices need more than the HPE 1.4 V for the top of the window), switching at
    the v_set SET pulse."""
    p = population()
    v = np.round(np.arange(p["set_gate_vt_v"], 2.0001, 0.01), 4)
    g = np.minimum(p["set_gain_siemens"] * (v - p["set_gate_vt_v"]) ** p["set_exponent"], p["g_on_siemens"])
    return SetCurve(v, g, p["v_set_v"])


def population_reset_curve() -> ResetCurve:
    """Gradual RESET at the reset gate: one pulse removes 1 - exp(-((v_eff - vth) / scale)^2)
    of (G - g_off), v_eff the pulse minus the transistor's drop: ~20 % at 1 V, ~60 % at 1.5 V
    (the HPE RESET ramp 0.3 -> 1.5 V)."""
    p = population()
    v = np.round(np.arange(0.0, 2.0001, 0.01), 4)
    v_eff = v * (1 - np.exp(-(p["reset_gate_v"] - p["reset_gate_vt_v"]) / p["reset_gate_char_v"]))
    over = np.maximum(v_eff - p["reset_vth_v"], 0.0) / p["reset_scale_v"]
    return ResetCurve(v, 1 - np.exp(-over ** 2), p["reset_gate_v"], p["g_off_siemens"])
