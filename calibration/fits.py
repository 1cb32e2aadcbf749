"""Vectorized fits and statistics the calibration steps share."""

from __future__ import annotations

import numpy as np


def line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares y = a + b x along axis 0, vectorized over the other axes.
    Returns (a, b, ok) with ok False where fewer than 3 points or no spread in x.

    For the read sweep x = 1/v, so a = gain * G (S) and b = offset current (A); for the VMM
    sweep x = v, so a = offset current (A) and b = gain * sum of the column's G (S)."""
    s0 = w.sum(0)
    s1 = (w * x).sum(0)
    s2 = (w * x * x).sum(0)
    sy = (w * y).sum(0)
    sxy = (w * x * y).sum(0)
    det = s0 * s2 - s1 * s1
    ok = (s0 >= 3) & (det > 1e-12 * np.maximum(s2 * s0, 1e-300))
    safe = np.where(ok, det, 1.0)
    b = np.where(ok, (s0 * sxy - s1 * sy) / safe, np.nan)
    a = np.where(ok, (sy - b * s1) / np.where(s0 > 0, s0, 1.0), np.nan)
    return a, b, ok


def column_median(values: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Median over rows of the masked values, per (array, col); `fallback` where none."""
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(mask, values, np.nan), axis=1)
    return np.where(np.isfinite(med), med, fallback)


def rel_spread(level: np.ndarray) -> float:
    """Relative spread (std / mean) of per-column levels."""
    return float(np.std(level) / np.mean(level))
