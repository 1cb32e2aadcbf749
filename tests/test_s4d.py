"""S4D kernel: convolution and recurrent modes agree; quantized values sit on their grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imssa_hw.training import quant
from imssa_hw.training.s4d import S4DKernel, vandermonde_powers


@pytest.mark.parametrize("bits", [None, 1, 2, 3, 4, 8])
@pytest.mark.parametrize("init,disc", [("lin", "zoh"), ("inv", "bilinear")])
def test_convolution_and_recurrence_agree(bits, init, disc):
    torch.manual_seed(1)
    kernel = S4DKernel(h=6, n=8, init=init, discretization=disc, bits=bits).double()
    u = torch.randn(3, 6, 80, dtype=torch.float64)
    with torch.no_grad():
        conv, step = kernel(u), kernel.step_forward(u)
    assert torch.allclose(conv, step, atol=1e-5, rtol=0)


def test_vandermonde_is_exact_for_zero_and_matches_pow():
    z = torch.tensor([0, 0.5 + 0.5j, -1j, 0.9], dtype=torch.cdouble)
    p = vandermonde_powers(z, 13)
    assert p.shape == (4, 13)
    expected = torch.stack([z**k for k in range(13)], dim=-1)
    expected[0, 0] = 1  # 0**0
    assert torch.allclose(p, expected)


@pytest.mark.parametrize("ranges", ["per_matrix", "shared"])
@pytest.mark.parametrize("bits", range(1, 9))
def test_every_deployed_value_is_level_times_step(bits, ranges):
    torch.manual_seed(bits)
    kernel = S4DKernel(h=5, n=6, bits=bits, dt_min=1e-3, dt_max=0.5, ranges=ranges).eval()
    lv = kernel.levels()
    k = kernel.discretize()
    lmax = quant.max_level(bits)
    for re, im, step, value in ((lv.a_re, lv.a_im, lv.a_step, k.a_bar),
                                (lv.b_re, lv.b_im, lv.b_step, k.b_bar),
                                (lv.c_re, lv.c_im, lv.c_step, k.c)):
        assert step.shape == (5,)  # one step per kernel, shared by real and imaginary parts
        assert torch.equal(re, torch.round(re)) and torch.equal(im, torch.round(im))
        assert int(re.abs().max()) <= lmax and int(im.abs().max()) <= lmax
        assert torch.allclose(value.real, re * step[:, None], rtol=0, atol=1e-7)
        assert torch.allclose(value.imag, im * step[:, None], rtol=0, atol=1e-7)
    # Abar: the constant step of the fixed dynamic range, levels inside the unit disc
    assert torch.allclose(lv.a_step, torch.full((5,), 1.0 / lmax))
    assert float((lv.a_re**2 + lv.a_im**2).max()) <= lmax**2
    if ranges == "shared":  # one dynamic range: Bbar and C on Abar's grid
        assert torch.equal(lv.b_step, lv.a_step) and torch.equal(lv.c_step, lv.a_step)
    else:  # each matrix's largest value on the top level
        top = torch.maximum(lv.b_re.abs().amax(-1), lv.b_im.abs().amax(-1))
        assert torch.equal(top, torch.full((5,), float(lmax)))


def test_shared_ranges_leave_small_bbar_on_few_levels():
    """With one range for every parameter, Bbar (about dt * B, small) uses only the lowest
    levels at 5 bits; with its own range it spans the window."""
    torch.manual_seed(0)
    own = S4DKernel(h=8, n=4, bits=5, a_range=0.75).levels()
    torch.manual_seed(0)
    shared = S4DKernel(h=8, n=4, bits=5, a_range=0.75, ranges="shared").levels()
    assert float(own.b_re.abs().max()) == 31
    assert float(shared.b_re.abs().max()) < 8


@pytest.mark.parametrize("bits,a_range", [(1, 1.0), (1, 0.75), (2, 1.0), (3, 0.75), (4, 1.0),
                                          (5, 1.0), (8, 1.0)])
def test_disc_projection_picks_the_nearest_allowed_grid_point(bits, a_range):
    """Abar's levels stay within |level| <= L_max and strictly inside the unit circle (no
    undamped integrators), on the allowed point nearest to the float value."""
    rng = np.random.default_rng(bits)
    r = a_range * np.sqrt(rng.uniform(0, 1, 4000))
    r[:4] = a_range  # on the range's edge: exactly on the unit circle when a_range = 1
    phi = rng.uniform(0, 2 * np.pi, 4000)
    phi[:4] = [0, np.pi / 2, np.pi, 3 * np.pi / 2]
    re = torch.tensor(r * np.cos(phi), dtype=torch.float32)  # the model's precision
    im = torch.tensor(r * np.sin(phi), dtype=torch.float32)
    lmax = quant.max_level(bits)
    step = torch.tensor([a_range / lmax], dtype=torch.float32)
    qr, qi = quant.complex_levels(re[None], im[None], step, bits, in_disc=True)
    norm = (qr**2 + qi**2).numpy()
    largest_norm = lmax**2 - 1 if a_range == 1.0 else lmax**2  # the unit circle is left out
    assert norm.max() <= largest_norm
    # brute force: the nearest allowed point lies within sqrt(2) of z (truncation is allowed),
    # so within +-2 levels of round(z) in each part
    z = (re.numpy() + 1j * im.numpy()) / float(step)
    offsets = np.array([complex(a, b) for a in range(-2, 3) for b in range(-2, 3)])
    candidates = np.round(z.real) + 1j * np.round(z.imag) + offsets[:, None]
    ok = ((np.abs(candidates.real) <= lmax) & (np.abs(candidates.imag) <= lmax)
          & (np.round(np.abs(candidates) ** 2) <= largest_norm))
    best = np.where(ok, np.abs(z - candidates) ** 2, np.inf).min(0)
    chosen = np.abs(z - (qr[0].numpy() + 1j * qi[0].numpy())) ** 2
    assert np.allclose(chosen, best)
    if bits == 1 and a_range == 1.0:  # the ternary grid on the unit disc: only Abar = 0 is left
        assert norm.max() == 0


def test_gradients_flow_through_the_straight_through_estimator():
    torch.manual_seed(0)
    kernel = S4DKernel(h=4, n=4, bits=2)
    u = torch.randn(2, 4, 32)
    kernel(u).pow(2).sum().backward()
    for name in ("log_dt", "log_a_re", "a_im", "b", "c", "d"):
        grad = getattr(kernel, name).grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_noise_aware_training_perturbs_levels_only_in_training():
    torch.manual_seed(0)
    kernel = S4DKernel(h=3, n=4, bits=3, noise_levels=0.5)
    kernel.train()
    a, b = kernel.discretize().a_bar, kernel.discretize().a_bar
    assert not torch.equal(a, b)
    kernel.eval()
    assert torch.equal(kernel.discretize().a_bar, kernel.discretize().a_bar)


def test_bits_out_of_range_is_refused():
    with pytest.raises(ValueError, match="bits"):
        quant.max_level(9)


def test_unknown_ranges_are_refused():
    from imssa_hw.model.config import ModelConfig

    with pytest.raises(ValueError, match="ranges"):
        ModelConfig(d_input=4, n_classes=2, ranges="per-kernel")
