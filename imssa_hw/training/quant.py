"""Fixed-dynamic-range quantization of the discretized S4D parameters.

Convention (chosen for the hardware, see docs/model.md): `bits` is the number of bits
per *device*. A value is stored on a differential pair G+ - G-, so the pair carries the sign
and a b-bit device gives the signed integer levels -(2**b - 1) .. 2**b - 1. One bit is the
ternary grid {-1, 0, 1} (each device on or off); zero is always representable (both devices
off). The compiler maps level L onto |L| conductance steps dG above G_min.

Every quantized value is `level * step`:
- Abar: one *constant* step per kernel, shared by real and imaginary parts (the paper's fixed
  fscale): step_A = a_range / L_max, a_range <= 1 since a stable Abar lies in the unit disc.
  Levels are additionally kept inside the disc |level| <= L_max and strictly inside the unit
  circle, so that rounding never makes a mode unstable nor undamped: a pole on the circle (an
  integrator or a pure oscillator, on the grid when a_range = 1) turns any conductance error
  into a state that grows every step.
- Bbar and C: one step per kernel each, from the kernel's current max-abs value (or Abar's
  step, with "shared" ranges). The board absorbs them in the input-voltage scale of the u row
  and the gain of the y column.

Gradients pass the rounding unchanged (straight-through estimator).
"""

from __future__ import annotations

import torch

from imssa_hw.board.params import max_level as device_max_level
from imssa_hw.model.config import MAX_BITS


def max_level(bits: int) -> int:
    """Largest level magnitude for `bits` bits per device (`board.params.max_level`), for bits
    a model may have."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be 1..{MAX_BITS}, got {bits}")
    return device_max_level(bits)


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward `q`, backward identity to `x`."""
    return x + (q - x).detach()


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to integers with a straight-through gradient."""
    return _ste(x, torch.round(x))


def max_abs_step(re: torch.Tensor, im: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-kernel step (last axis reduced) putting the largest |Re| or |Im| on the top level."""
    peak = torch.maximum(re.detach().abs().amax(-1), im.detach().abs().amax(-1))
    return peak.clamp_min(1e-12) / max_level(bits)


def complex_levels(re: torch.Tensor, im: torch.Tensor, step: torch.Tensor, bits: int,
                   in_disc: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels (as float tensors) of re + i*im on the grid `step` (one per kernel).

    With `in_disc` (Abar), levels outside the disc |level| <= L_max or on or outside the unit
    circle |level * step| >= 1 are moved to the nearest allowed grid point, found among the
    candidates that round one or both parts toward zero.
    """
    lmax = max_level(bits)
    s = step[..., None]
    sr, si = re / s, im / s
    qr = torch.round(sr).clamp(-lmax, lmax)
    qi = torch.round(si).clamp(-lmax, lmax)
    if not in_disc:
        return qr, qi

    def allowed(cr: torch.Tensor, ci: torch.Tensor) -> torch.Tensor:
        norm = cr**2 + ci**2
        # in float64 with a margin for a float32 step (1/31 is stored a hair small); the
        # largest radius inside the circle on any grid, (1 - 1/255**2)**0.5, is well clear
        return (norm <= lmax**2) & (norm.double() * s.double() ** 2 < 1 - 1e-6)

    outside = ~allowed(qr, qi)
    if bool(outside.any()):
        # truncating a hair inside always gives an allowed point, even for |Abar| = 1 exactly
        tr = torch.trunc(sr * (1 - 1e-6)).clamp(-lmax, lmax)
        ti = torch.trunc(si * (1 - 1e-6)).clamp(-lmax, lmax)
        best_r, best_i = tr, ti
        best_d = (sr - tr) ** 2 + (si - ti) ** 2
        for cr, ci in ((tr, qi), (qr, ti)):
            d = (sr - cr) ** 2 + (si - ci) ** 2
            ok = allowed(cr, ci) & (d < best_d)
            best_r, best_i = torch.where(ok, cr, best_r), torch.where(ok, ci, best_i)
            best_d = torch.where(ok, d, best_d)
        qr, qi = torch.where(outside, best_r, qr), torch.where(outside, best_i, qi)
    return qr, qi


def fake_quantize(re: torch.Tensor, im: torch.Tensor, step: torch.Tensor, bits: int,
                  in_disc: bool = False, noise_levels: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize re + i*im to `level * step` with a straight-through gradient.

    `noise_levels` adds Gaussian noise of that sigma (in level units) to the levels, for
    noise-aware training.
    """
    qr, qi = complex_levels(re, im, step, bits, in_disc)
    if noise_levels > 0:
        qr = qr + noise_levels * torch.randn_like(qr)
        qi = qi + noise_levels * torch.randn_like(qi)
    s = step[..., None]
    return _ste(re, qr * s), _ste(im, qi * s)
