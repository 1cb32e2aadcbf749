"""The IMSSA mapping: one real matrix per S4D kernel, integer levels to differential conductances.

Kernel h with N/2 complex modes has the real state [Re x_0, Im x_0, Re x_1, Im x_1, ...] (S = N
entries, each mode's pair adjacent). Its matrix M, (S+1) x (S+1), maps the inputs
[x_{t-1}; u_t] to the outputs [x_t; y_{t-1}]:

    M = [[A_blk, Bbar], [c, 0]],  A_blk = diag of [[a, -b], [b, a]] per mode (Abar = a + ib),
    Bbar = [Re Bbar_0, Im Bbar_0, ...],  c = 2 [Re C_0, -Im C_0, Re C_1, -Im C_1, ...]

so one crossbar operation computes the whole recurrence step of a kernel (y lags one step).
M is stored as integer levels; its values are level * step with one step per block (a_step for
A, b_step for Bbar, 2 * c_step for the readout), which the schedule absorbs in row voltages
and output gains.

On the crossbar, rows carry inputs and columns outputs (the tile is M transposed). A level L
becomes a pair G+ - G- = L * dG with G = G_min + |L| * dG on one device of the pair and G_min
(off) on the other; zero is both off. The pair sits on two columns of one output (differential
"columns", read as I+ - I-) or on two rows of one input driven at +V and -V ("rows").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imssa_hw.board import ConductanceWindow
from imssa_hw.board.params import max_level
from imssa_hw.board.profile import Differential
from imssa_hw.errors import BadInput
from imssa_hw.model.checkpoint import QuantizedKernels


@dataclass(frozen=True)
class KernelMatrices:
    """One layer's kernel matrices M in integer levels, with the steps that give their values."""

    levels: np.ndarray  # int (H, S+1, S+1): [outputs x_t..., y_{t-1}] x [inputs x_{t-1}..., u_t]
    a_step: np.ndarray  # (H,)
    b_step: np.ndarray  # (H,)
    c_step: np.ndarray  # (H,)
    d: np.ndarray  # (H,) the digital feed-through

    @property
    def state_size(self) -> int:
        return self.levels.shape[1] - 1

    def values(self) -> np.ndarray:
        """M in model units (H, S+1, S+1): levels times a_step, b_step or 2 * c_step."""
        s = self.state_size
        scale = np.empty(self.levels.shape)
        scale[:, :s, :s] = self.a_step[:, None, None]
        scale[:, :s, s] = self.b_step[:, None]
        scale[:, s, :] = 2 * self.c_step[:, None]
        return self.levels * scale


def kernel_matrices(kernels: QuantizedKernels) -> KernelMatrices:
    """Build M (in levels) for every kernel of a layer."""
    h, modes = kernels.a_re.shape
    levels = assemble_levels(np.zeros((h, 2 * modes + 1, 2 * modes + 1), dtype=np.int64),
                             kernels.a_re, kernels.a_im, kernels.b_re, kernels.b_im,
                             kernels.c_re, kernels.c_im)
    steps = (np.asarray(v, dtype=np.float64) for v in
             (kernels.a_step, kernels.b_step, kernels.c_step, kernels.d))
    return KernelMatrices(levels, *steps)


def assemble_levels(out, a_re, a_im, b_re, b_im, c_re, c_im):
    """Fill M's levels (H, S+1, S+1) into `out` (zeros) from the complex levels (H, N/2) of
    Abar, Bbar and C; works on numpy arrays and torch tensors alike."""
    s = out.shape[-1] - 1
    re, im = list(range(0, s, 2)), list(range(1, s, 2))
    out[:, re, re] = a_re
    out[:, re, im] = -a_im
    out[:, im, re] = a_im
    out[:, im, im] = a_re
    out[:, re, s] = b_re
    out[:, im, s] = b_im
    out[:, s, re] = c_re
    out[:, s, im] = -c_im
    return out


@dataclass(frozen=True)
class TileLayout:
    """Where a kernel's inputs and outputs sit in its tile (tile rows x tile columns).

    Tile row r carries input `row_input[r]` (0..S-1 the state, S the layer input u) with sign
    `row_sign[r]`; output j is the current of column `out_plus[j]` minus that of `out_minus[j]`
    (-1: single-ended).
    """

    row_input: np.ndarray
    row_sign: np.ndarray
    out_plus: np.ndarray
    out_minus: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_input), len(self.out_plus) + int((self.out_minus >= 0).sum())


def tile_layout(state_size: int, differential: Differential | str) -> TileLayout:
    """Columns mode: one row per input, columns (2j, 2j+1) = (+, -) of output j.
    Rows mode: rows (2i, 2i+1) = input i at +V and -V, one column per output."""
    n = state_size + 1
    idx = np.arange(n)
    if Differential(differential) is Differential.COLUMNS:
        return TileLayout(idx, np.ones(n, dtype=np.int64), 2 * idx, 2 * idx + 1)
    return TileLayout(np.repeat(idx, 2), np.tile([1, -1], n), idx, np.full(n, -1))


def tile_conductances(levels: np.ndarray, layout: TileLayout, window: ConductanceWindow,
                      bits: int) -> np.ndarray:
    """Target conductances (S) of one kernel's tile from its M in levels (S+1, S+1)."""
    lmax = max_level(bits)
    worst = int(np.abs(levels).max(initial=0))
    if worst > lmax:
        raise BadInput(f"a kernel level of magnitude {worst} exceeds the {bits}-bit range "
                       f"+-{lmax}")
    rows, cols = layout.shape
    col_output = np.empty(cols, dtype=np.int64)
    col_sign = np.empty(cols, dtype=np.int64)
    col_output[layout.out_plus], col_sign[layout.out_plus] = np.arange(len(layout.out_plus)), 1
    minus = layout.out_minus >= 0
    col_output[layout.out_minus[minus]] = np.flatnonzero(minus)
    col_sign[layout.out_minus[minus]] = -1
    # cell (r, k) holds level M[output of k, input of r], signed by the row's and column's side
    signed = levels.T[layout.row_input][:, col_output] * layout.row_sign[:, None] * col_sign
    return window.g_min_siemens + np.clip(signed, 0, None) * window.dg(bits)
