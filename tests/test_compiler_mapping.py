"""Mapping: the real 2x2 expansion, the one-matrix step, levels to differential conductances."""

from __future__ import annotations

import numpy as np
import pytest

from imssa_hw.board import ConductanceWindow
from imssa_hw.errors import BadInput
from imssa_hw.model.checkpoint import QuantizedKernels
from imssa_hw.model.mapping import kernel_matrices, tile_conductances, tile_layout

WINDOW = ConductanceWindow(g_min_siemens=2e-6, g_max_siemens=150e-6, tolerance_siemens=4e-6)


def _kernels(h=3, modes=2, bits=3, seed=0) -> QuantizedKernels:
    rng = np.random.default_rng(seed)
    lmax = 2**bits - 1
    fields = {}
    for part in "abc":
        for name in ("re", "im"):
            fields[f"{part}_{name}"] = rng.integers(-lmax, lmax + 1, (h, modes)).astype(np.int16)
        fields[f"{part}_step"] = rng.uniform(0.01, 0.5, h).astype(np.float32)
    return QuantizedKernels(**fields, d=rng.standard_normal(h).astype(np.float32))


def _real(z: np.ndarray) -> np.ndarray:
    """Complex (H, modes) -> interleaved real (H, 2 modes): [Re z_0, Im z_0, Re z_1, ...]."""
    return np.stack([z.real, z.imag], -1).reshape(z.shape[0], -1)


def test_matrix_blocks_and_readout():
    k = _kernels()
    m = kernel_matrices(k)
    s = m.state_size
    assert s == 4 and m.levels.shape == (3, 5, 5)
    for h in range(3):
        for mode in range(2):
            a, b = k.a_re[h, mode], k.a_im[h, mode]
            block = m.levels[h, 2 * mode:2 * mode + 2, 2 * mode:2 * mode + 2]
            assert np.array_equal(block, [[a, -b], [b, a]])
        assert not m.levels[h, 0:2, 2:4].any() and not m.levels[h, 2:4, 0:2].any()
        assert np.array_equal(m.levels[h, :s, s], np.stack([k.b_re[h], k.b_im[h]], 1).ravel())
        assert m.levels[h, s, s] == 0
    values = m.values()
    a_bar, b_bar, c = k.complex_values()
    assert np.allclose(values[:, s, :s], 2 * _real(np.conj(c)), rtol=1e-6)  # 2[Re C, -Im C]
    assert np.allclose(values[:, :s, s], _real(b_bar), rtol=1e-6)
    assert np.allclose(values[:, 0, 0], a_bar[:, 0].real, rtol=1e-6)


def test_one_matrix_is_one_recurrence_step():
    """[x_t; y_{t-1}] = M [x_{t-1}; u_t] for the complex recurrence."""
    k = _kernels(seed=1)
    m = kernel_matrices(k).values()
    a_bar, b_bar, c = k.complex_values()
    rng = np.random.default_rng(2)
    x_prev = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    u = rng.standard_normal(3)
    x_new = a_bar * x_prev + b_bar * u[:, None]
    y_prev = 2 * (c * x_prev).sum(-1).real
    out = np.einsum("hij,hj->hi", m, np.concatenate([_real(x_prev), u[:, None]], 1))
    assert np.allclose(out[:, :4], _real(x_new)) and np.allclose(out[:, 4], y_prev)


@pytest.mark.parametrize("differential", ["columns", "rows"])
@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_differential_pairs(differential, bits):
    k = _kernels(h=1, modes=2, bits=bits, seed=bits)
    levels = kernel_matrices(k).levels[0]
    layout = tile_layout(4, differential)
    g = tile_conductances(levels, layout, WINDOW, bits)
    dg = (150e-6 - 2e-6) / (2**bits - 1)
    assert WINDOW.dg(bits) == pytest.approx(dg)
    assert g.shape == ((5, 10) if differential == "columns" else (10, 5))
    assert g.min() >= 2e-6 - 1e-18 and g.max() <= 150e-6 + 1e-18
    # effective weight: sum over a row pair / column pair with signs = level * dG
    effective = np.zeros((5, 5))  # inputs x outputs
    for r, (i, sign) in enumerate(zip(layout.row_input, layout.row_sign)):
        for j, (p, q) in enumerate(zip(layout.out_plus, layout.out_minus)):
            effective[i, j] += sign * (g[r, p] - (g[r, q] if q >= 0 else 0))
    assert np.allclose(effective, levels.T * dg, atol=1e-15)
    # every device is G_min + |level| dG and one device of each pair is off
    steps = np.round((g - 2e-6) / dg)
    assert np.allclose(g, 2e-6 + steps * dg)
    if differential == "columns":
        pairs = g.reshape(5, 5, 2)
    else:
        pairs = g.reshape(5, 2, 5).transpose(0, 2, 1)
    assert (np.isclose(pairs, 2e-6).any(-1)).all()
    zero = levels.T == 0
    assert np.allclose(pairs[zero], 2e-6)


def test_level_outside_the_bit_range_is_refused():
    levels = np.zeros((3, 3), dtype=np.int64)
    levels[0, 0] = 4
    with pytest.raises(BadInput, match="exceeds the 2-bit range"):
        tile_conductances(levels, tile_layout(2, "columns"), WINDOW, 2)
