"""Measured pulse-response curves of a device population, model-free and monotone.

`SetCurve`: the conductance one SET pulse reaches from the off state, as a function of the gate
voltage (1T1R: the gate sets the compliance current). `ResetCurve`: the fraction of (G - g_off)
one RESET pulse removes, as a function of the RESET voltage at a fixed gate voltage. Both are
tables of medians over a sample of devices, made monotone, and inverted by linear interpolation
(clipped to the measured range): write-verify uses them to pick its first pulse.

    gate = cal.set_curve.gate_for(g_target_siemens)                # (n,) V
    v = cal.reset_curve.voltage_for(g_now_siemens, g_target_siemens)     # (n,) V
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imssa_hw.errors import BadInput


def monotone(values: np.ndarray) -> np.ndarray:
    """`values` made non-decreasing (running maximum)."""
    return np.maximum.accumulate(np.asarray(values, dtype=float))


def _inverse(y_table: np.ndarray, x_table: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The lowest x at which the non-decreasing piecewise-linear table reaches y; clipped to the
    table's x range (y below the table: its first x; above: its last)."""
    ys = np.asarray(y_table, dtype=float)
    xs = np.asarray(x_table, dtype=float)
    y = np.asarray(y, dtype=float)
    i = np.clip(np.searchsorted(ys, y, side="left"), 1, max(len(ys) - 1, 1))
    if len(ys) == 1:
        return np.full(y.shape, xs[0])
    y0, y1, x0, x1 = ys[i - 1], ys[i], xs[i - 1], xs[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y1 > y0, (y - y0) / (y1 - y0), 1.0)
    x = x0 + np.clip(t, 0.0, 1.0) * (x1 - x0)
    return np.where(y <= ys[0], xs[0], np.where(y > ys[-1], xs[-1], x))


def _vector(data: dict, key: str, where: str) -> np.ndarray:
    value = data.get(key)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = np.array([])
    if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)):
        raise BadInput(f"{where}: {key} must be a non-empty list of finite numbers")
    return arr


def _number(data: dict, key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SetCurve:
    """Population (or per-device-shifted) SET response, model-free and monotone."""

    v_gate_v: np.ndarray
    """Increasing gate voltages measured, V."""
    g_siemens: np.ndarray
    """Median conductance reached after one SET pulse from the off state at that gate (made
    non-decreasing), S."""
    v_set_v: float
    """A SET pulse voltage that switches (nearly) all devices, V."""
    spread_siemens: np.ndarray | None = None
    """Device-to-device spread at each gate (half the 16-84 % range), S; None when unknown."""

    def __post_init__(self) -> None:
        g = monotone(self.g_siemens)
        v = _increasing_axis(self.v_gate_v, g, "v_gate_v", "g_siemens")
        object.__setattr__(self, "v_gate_v", v)
        object.__setattr__(self, "g_siemens", g)
        if self.spread_siemens is not None:
            object.__setattr__(self, "spread_siemens", np.asarray(self.spread_siemens, dtype=float))

    def gate_for(self, g_target_siemens: np.ndarray) -> np.ndarray:
        """The gate voltage whose SET is expected to reach `g_target_siemens` (interpolated, clipped to
        the measured gate range)."""
        return _inverse(self.g_siemens, self.v_gate_v, g_target_siemens)

    def g_at(self, v_gate_v: np.ndarray) -> np.ndarray:
        """Expected conductance after one SET pulse at `v_gate_v` (clipped to the range)."""
        return np.interp(np.asarray(v_gate_v, dtype=float), self.v_gate_v, self.g_siemens)

    def shifted(self, dv_gate_v: float) -> SetCurve:
        """The same curve for a device whose response is shifted by `dv_gate_v` along the gate
        axis (it needs `dv_gate_v` more gate for the same conductance)."""
        return SetCurve(self.v_gate_v + dv_gate_v, self.g_siemens, self.v_set_v, self.spread_siemens)

    def to_dict(self) -> dict:
        return {"v_gate_v": self.v_gate_v.tolist(), "g_siemens": self.g_siemens.tolist(),
                "v_set_v": float(self.v_set_v),
                "spread_siemens": None if self.spread_siemens is None else self.spread_siemens.tolist()}

    @classmethod
    def from_dict(cls, data: dict, where: str = "set_curve") -> SetCurve:
        if not isinstance(data, dict):
            raise BadInput(f"{where} must be an object")
        v, g = _vector(data, "v_gate_v", where), _vector(data, "g_siemens", where)
        spread = None if data.get("spread_siemens") is None else _vector(data, "spread_siemens", where)
        if v.shape != g.shape or (spread is not None and spread.shape != v.shape):
            raise BadInput(f"{where}: v_gate_v, g_siemens (and spread_siemens) must have the same length")
        if np.any(np.diff(v) <= 0):
            raise BadInput(f"{where}: v_gate_v must be increasing")
        if np.any(np.diff(g) < 0):
            raise BadInput(f"{where}: g_siemens must be non-decreasing")
        return cls(v, g, _number(data, "v_set_v", where), spread)


@dataclass(frozen=True)
class ResetCurve:
    """Population RESET response at one gate voltage, model-free and monotone."""

    v_reset_v: np.ndarray
    """Increasing RESET voltages measured, V."""
    fraction_removed: np.ndarray
    """Median fraction of (G - g_off) removed by one RESET pulse at that voltage (made
    non-decreasing, within [0, 1])."""
    v_gate_v: float
    """The gate voltage used for RESET, V."""
    g_off_siemens: float
    """Median off-state conductance, S."""

    def __post_init__(self) -> None:
        f = np.clip(monotone(self.fraction_removed), 0.0, 1.0)
        v = _increasing_axis(self.v_reset_v, f, "v_reset_v", "fraction_removed")
        object.__setattr__(self, "v_reset_v", v)
        object.__setattr__(self, "fraction_removed", f)

    def fraction_at(self, v_reset_v: np.ndarray) -> np.ndarray:
        """Expected fraction of (G - g_off) removed by one pulse at `v_reset_v`."""
        return np.interp(np.asarray(v_reset_v, dtype=float), self.v_reset_v, self.fraction_removed)

    def voltage_for(self, g_now_siemens: np.ndarray, g_target_siemens: np.ndarray) -> np.ndarray:
        """The RESET voltage expected to take `g_now_siemens` to `g_target_siemens` in one pulse (clipped to
        the measured range: the lowest voltage when no RESET is needed, the highest when the step
        is larger than one pulse removes)."""
        g_now, g_target = np.broadcast_arrays(np.asarray(g_now_siemens, dtype=float),
                                              np.asarray(g_target_siemens, dtype=float))
        above = g_now - self.g_off_siemens
        with np.errstate(divide="ignore", invalid="ignore"):
            wanted = np.where(above > 0, (g_now - g_target) / np.where(above > 0, above, 1.0), 0.0)
        wanted = np.clip(wanted, 0.0, 1.0)
        return _inverse(self.fraction_removed, self.v_reset_v, wanted)

    def to_dict(self) -> dict:
        return {"v_reset_v": self.v_reset_v.tolist(),
                "fraction_removed": self.fraction_removed.tolist(),
                "v_gate_v": float(self.v_gate_v), "g_off_siemens": float(self.g_off_siemens)}

    @classmethod
    def from_dict(cls, data: dict, where: str = "reset_curve") -> ResetCurve:
        if not isinstance(data, dict):
            raise BadInput(f"{where} must be an object")
        v, f = _vector(data, "v_reset_v", where), _vector(data, "fraction_removed", where)
        if v.shape != f.shape:
            raise BadInput(f"{where}: v_reset_v and fraction_removed must have the same length")
        if np.any(np.diff(v) <= 0):
            raise BadInput(f"{where}: v_reset_v must be increasing")
        if np.any(np.diff(f) < 0) or np.any(f < 0) or np.any(f > 1):
            raise BadInput(f"{where}: fraction_removed must be non-decreasing within [0, 1]")
        return cls(v, f, _number(data, "v_gate_v", where), _number(data, "g_off_siemens", where))


def _increasing_axis(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> np.ndarray:
    """`x` as floats, checked to be an increasing 1-D axis of the same non-zero length as `y`."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 1:
        raise ValueError(f"{x_name} and {y_name} must be 1-D of the same non-zero length")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"{x_name} must be increasing")
    return x
