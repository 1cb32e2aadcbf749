"""Defect repair: kernels re-fitted around the stuck devices that placement could not avoid.

Placement moves stuck devices off the cells that matter as far as the spare lines allow
(compiler/placement.py); on a board with 2 % stuck devices a dozen or two stay on cells that
matter. A stuck-on device there (about 170 uS where the cell wants 1 uS) adds 16 levels to one
entry of a kernel's matrix M: in the A block it makes the mode unstable, in B or C it swamps the
mode's output. One such kernel of 128 costs points of accuracy. The calibration knows each
stuck device's conductance (defects.json), so the kernel can be built around it instead.

For a tile holding a stuck device that misses its target, candidates are formed in levels:

- **compensate**: the other device of the stuck device's differential pair takes the value that
  keeps G+ - G- at the entry's target, as near as the conductance window allows. Exact when the
  stuck device sits on the side of the pair that carries the entry (a stuck-on device on a cell
  of 2 levels or more), else the entry lands at the nearest value the window reaches;
- **refit**: the readout row c (integer levels) re-fitted by least squares to the kernel's
  impulse response K[k] = c A^k B over the model's sequence length, the entries that stuck
  devices force held where they are;
- **drop mode m**: a mode that a stuck device spoils switched off (its B, C and A block at 0,
  as near as the stuck devices allow), and c refitted: the kernel loses a mode instead of
  carrying a wrong one.

The candidate with the smallest impulse-response error is kept; a candidate is ruled out when its
A is unstable (spectral radius >= 1) or its state peaks above the kernel's own (the loop scales,
fixed at training, would clip it). The stuck device's target becomes the conductance it holds
(so it counts as on target), its partner's the compensating value. Devices of unknown
conductance are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imssa_hw.board import ConductanceWindow
from imssa_hw.board.params import max_level
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.compiler.placement import Placement
from imssa_hw.model.mapping import KernelMatrices, TileLayout

STATE_GROWTH_LIMIT = 1.0
"""A candidate's state may peak at most this much above the kernel's largest state."""


@dataclass(frozen=True)
class KernelRepair:
    """How one kernel's tile was re-fitted around its stuck devices."""

    tile: int
    layer: int
    kernel: int
    stuck_devices: int
    """Stuck devices of known conductance on the tile's cells (within tolerance or not)."""
    action: str
    """compensate, refit, or drop mode m (then refit)."""
    error_before: float
    """Impulse-response error (relative L2) with the stuck devices where they are, unrepaired."""
    error_after: float
    """The same after the repair."""

    def to_dict(self) -> dict:
        return {"tile": self.tile, "layer": self.layer, "kernel": self.kernel,
                "stuck_devices": self.stuck_devices, "action": self.action,
                "error_before": _finite(self.error_before),
                "error_after": _finite(self.error_after)}


def _finite(error: float) -> float | None:
    """An error for JSON: rounded, None when no candidate was usable (inf)."""
    return round(error, 6) if np.isfinite(error) else None


@dataclass(frozen=True)
class _Entry:
    """M[j, i] spoiled by the stuck device at tile cell (row, col), whose pair partner is
    (partner_row, partner_col); M[j, i] can reach lo..hi (levels)."""

    j: int
    i: int
    row: int
    col: int
    partner_row: int
    partner_col: int
    sign: float
    lo: float
    hi: float


def repair(placement: Placement, defects: DefectMap, matrices: list[KernelMatrices],
           layout: TileLayout, window: ConductanceWindow, bits: int, length: int
           ) -> tuple[np.ndarray, tuple[KernelRepair, ...]]:
    """Targets (arrays, rows, cols, S) with every tile that holds a harmful stuck device
    re-fitted, and what was done to each. `matrices` are the layers' kernels in tile order
    (layer-major); `length` is the sequence length the impulse responses are compared over."""
    targets = placement.targets_siemens.copy()
    stuck_g = np.full(targets.shape, np.nan)
    for d in defects.stuck:
        if d.g_siemens is not None:
            stuck_g[d.array, d.row, d.col] = d.g_siemens
    per_layer = matrices[0].levels.shape[0]
    repairs = []
    for t in sorted({c.tile for c in placement.conflicts if c.tile >= 0}):
        tile = placement.tiles[t]
        cells = np.ix_(tile.rows, tile.cols)
        g = stuck_g[tile.array][cells]
        if np.isnan(g).all():
            continue
        layer, kernel = divmod(t, per_layer)
        fitted, action, before, after = _repair_tile(
            matrices[layer], kernel, g, layout, window, window.dg(bits), max_level(bits), length)
        targets[tile.array][cells] = fitted
        repairs.append(KernelRepair(t, layer, kernel, int((~np.isnan(g)).sum()), action,
                                    before, after))
    return targets, tuple(repairs)


def _operators(layout: TileLayout) -> tuple[np.ndarray, np.ndarray]:
    """R (tile rows, S+1): row r carries input i with sign R[r, i]; C (tile cols, S+1): column
    k adds to output j with sign C[k, j]. M[j, i] = sum R[r, i] C[k, j] (G[r, k] - G_min) / dG."""
    n = len(layout.out_plus)
    rows = np.zeros((len(layout.row_input), n))
    rows[np.arange(len(layout.row_input)), layout.row_input] = layout.row_sign
    cols = np.zeros((layout.shape[1], n))
    cols[layout.out_plus, np.arange(n)] = 1
    minus = layout.out_minus >= 0
    cols[layout.out_minus[minus], np.flatnonzero(minus)] = -1
    return rows, cols


def _entries(g: np.ndarray, layout: TileLayout, rows: np.ndarray, cols: np.ndarray,
             window: ConductanceWindow, dg_siemens: float) -> list[_Entry]:
    """The entries of M that the stuck devices (g not NaN) fix, with the range each can reach."""
    entries = []
    for r, k in zip(*np.nonzero(~np.isnan(g))):
        i = int(layout.row_input[r])
        j = int(np.flatnonzero(cols[k])[0])
        if layout.out_minus[j] >= 0:  # the pair is two columns of one row
            pr, pk = r, int(layout.out_minus[j] if cols[k, j] > 0 else layout.out_plus[j])
        else:  # two rows (+V, -V) of one column
            pr = int(np.flatnonzero((layout.row_input == i) & (np.arange(len(rows)) != r))[0])
            pk = k
        sign = float(rows[r, i] * cols[k, j])
        partner = np.array([g[pr, pk]]) if not np.isnan(g[pr, pk]) else \
            np.array([window.g_min_siemens, window.g_max_siemens])
        reach = sign * (g[r, k] - partner) / dg_siemens
        entries.append(_Entry(j, i, int(r), int(k), pr, pk, sign, reach.min(), reach.max()))
    return entries


def _values(levels: np.ndarray, m: KernelMatrices, h: int) -> np.ndarray:
    """M in model units: levels times a_step, b_step or 2 * c_step (as KernelMatrices.values)."""
    s = levels.shape[0] - 1
    scale = np.empty(levels.shape)
    scale[:s, :s], scale[:s, s], scale[s, :] = m.a_step[h], m.b_step[h], 2 * m.c_step[h]
    return levels * scale


def _states(values: np.ndarray, length: int) -> np.ndarray:
    """The state's impulse response X[k] = A^k B, (length, S)."""
    s = values.shape[0] - 1
    a, x = values[:s, :s], values[:s, s].copy()
    out = np.empty((length, s))
    for k in range(length):
        out[k] = x
        x = a @ x
    return out


def _repair_tile(m: KernelMatrices, h: int, g: np.ndarray, layout: TileLayout,
                 window: ConductanceWindow, dg_siemens: float, lmax: int, length: int
                 ) -> tuple[np.ndarray, str, float, float]:
    """(tile conductances, action, error before, error after) for kernel h with stuck devices
    at g (S, NaN where healthy)."""
    rows, cols = _operators(layout)
    s = m.state_size
    levels = m.levels[h].astype(np.float64)
    reference = _values(levels, m, h)
    x_ref = _states(reference, length)
    k_ref = x_ref @ reference[s, :s]
    norm = max(float(np.sum(k_ref ** 2)), 1e-30)
    state_peak = float(np.abs(x_ref).max())
    entries = _entries(g, layout, rows, cols, window, dg_siemens)
    held_c = sorted({e.i for e in entries if e.j == s and e.i < s})

    def held(candidate: np.ndarray) -> np.ndarray:
        for e in entries:
            candidate[e.j, e.i] = np.clip(candidate[e.j, e.i], e.lo, e.hi)
        return candidate

    def refit(candidate: np.ndarray) -> np.ndarray:
        x = _states(_values(candidate, m, h), length)
        free = [i for i in range(s) if i not in held_c]
        rest = k_ref - x[:, held_c] @ (candidate[s, held_c] * 2 * m.c_step[h])
        solution = np.linalg.lstsq(x[:, free], rest, rcond=None)[0]
        out = candidate.copy()
        out[s, free] = np.clip(np.rint(solution / (2 * m.c_step[h])), -lmax, lmax)
        return held(out)

    def mismatch(candidate: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(relative impulse-response error, values, state response) of levels `candidate`;
        the u_t -> y_{t-1} cell counts as a tap the kernel does not have."""
        values = _values(candidate, m, h)
        x = _states(values, length)
        return (float(np.sum((x @ values[s, :s] - k_ref) ** 2) + values[s, s] ** 2) / norm,
                values, x)

    def error(candidate: np.ndarray) -> float:
        err, values, x = mismatch(candidate)
        if (np.abs(np.linalg.eigvals(values[:s, :s])).max() >= 1
                or np.abs(x).max() > STATE_GROWTH_LIMIT * state_peak):
            return np.inf
        return err

    def conductances(candidate: np.ndarray) -> np.ndarray:
        """The tile for levels `candidate`: G_min + |L| dG on the side that carries L."""
        signed = np.einsum("ri,kj,ji->rk", rows, cols, candidate)
        return window.g_min_siemens + np.clip(signed, 0, None) * dg_siemens

    compensated = held(levels.copy())
    candidates = {"compensate": compensated, "refit": refit(compensated)}
    for mode in sorted({e.i // 2 for e in entries if e.i < s} | {e.j // 2 for e in entries if e.j < s}):
        dropped = compensated.copy()
        pair = [2 * mode, 2 * mode + 1]
        dropped[pair, s] = dropped[s, pair] = 0
        dropped[np.ix_(pair, pair)] = 0
        candidates[f"drop mode {mode}"] = refit(held(dropped))
    scores = {name: error(c) for name, c in candidates.items()}
    action = min(scores, key=scores.get)
    chosen = candidates[action]

    # unrepaired: the stuck devices add to the entries the ideal tile gives
    unrepaired = np.where(np.isnan(g), conductances(levels), g)
    error_before = mismatch(np.einsum("ri,kj,rk->ji", rows, cols,
                                      unrepaired - window.g_min_siemens) / dg_siemens)[0]

    fitted = conductances(chosen)
    for e in entries:
        if np.isnan(g[e.partner_row, e.partner_col]):
            fitted[e.partner_row, e.partner_col] = np.clip(
                g[e.row, e.col] - e.sign * chosen[e.j, e.i] * dg_siemens,
                window.g_min_siemens, window.g_max_siemens)
    fitted = np.where(np.isnan(g), fitted, g)
    return fitted, action, error_before, scores[action]
