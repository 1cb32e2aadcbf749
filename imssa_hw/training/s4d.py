"""S4D: a diagonal state-space layer (Gu et al. 2022) with quantized discretized parameters.

H independent kernels (one per channel), each with N/2 complex modes:
    x_t = Abar x_{t-1} + Bbar u_t,   y_t = 2 Re(C x_t) + D u_t
Convolution mode (Vandermonde kernel + FFT) trains fast; step mode is the recurrence that the
crossbar executes and the reference for hardware. With `bits` set, Abar, Bbar and C are the
fixed-dynamic-range quantized values of `imssa_hw.training.quant`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from imssa_hw.training import quant


@dataclass
class DiscreteKernels:
    """Discretized (and possibly quantized) parameters: complex (H, N/2) tensors, D (H,).

    Quantized kernels also carry their steps (H,): value = level * step.
    """

    a_bar: torch.Tensor
    b_bar: torch.Tensor
    c: torch.Tensor
    d: torch.Tensor
    a_step: torch.Tensor | None = None
    b_step: torch.Tensor | None = None
    c_step: torch.Tensor | None = None


@dataclass
class KernelLevels:
    """Integer levels and steps of the quantized kernels: value = level * step (per kernel)."""

    a_re: torch.Tensor
    a_im: torch.Tensor
    a_step: torch.Tensor
    b_re: torch.Tensor
    b_im: torch.Tensor
    b_step: torch.Tensor
    c_re: torch.Tensor
    c_im: torch.Tensor
    c_step: torch.Tensor


def vandermonde_powers(z: torch.Tensor, length: int) -> torch.Tensor:
    """z**l for l = 0..length-1 on a new last axis, by repeated doubling (exact for z = 0)."""
    powers = torch.ones(*z.shape, 1, dtype=z.dtype, device=z.device)
    zk = z[..., None]
    while powers.shape[-1] < length:
        powers = torch.cat([powers, powers * zk], dim=-1)
        zk = zk * zk
    return powers[..., :length]


class S4DKernel(nn.Module):
    """The SSM part of an S4D layer: H diagonal kernels with N/2 complex modes each."""

    def __init__(self, h: int, n: int, init: str = "lin", discretization: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, bits: int | None = None,
                 a_range: float = 1.0, ranges: str = "per_matrix", noise_levels: float = 0.0):
        super().__init__()
        if n % 2:
            raise ValueError(f"state size N must be even (N/2 complex modes), got {n}")
        if init not in ("lin", "inv"):
            raise ValueError(f"init must be 'lin' or 'inv', got {init!r}")
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
        self.h, self.n, self.discretization = h, n, discretization
        self.bits, self.noise_levels, self.a_range = bits, noise_levels, a_range
        self.ranges = ranges
        modes = n // 2
        log_dt = torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_a_re = nn.Parameter(torch.full((h, modes), math.log(0.5)))
        k = torch.arange(modes, dtype=torch.float32)
        a_im = math.pi * k if init == "lin" else (n / math.pi) * (n / (2 * k + 1) - 1)
        self.a_im = nn.Parameter(a_im.repeat(h, 1))
        self.b = nn.Parameter(torch.view_as_real(torch.ones(h, modes, dtype=torch.cfloat)))
        self.c = nn.Parameter(torch.view_as_real(torch.randn(h, modes, dtype=torch.cfloat)))
        self.d = nn.Parameter(torch.randn(h))
        # The fixed dynamic range of Abar: one constant step per kernel (not trained).
        lmax = quant.max_level(bits) if bits else 1
        self.register_buffer("a_step", torch.full((h,), a_range / lmax))
        self.loop: Callable[[DiscreteKernels, torch.Tensor, bool], torch.Tensor] | None = None
        """The recurrence as a board runs it (`imssa_hw.training.hardware_aware`): (kernels, u, training)
        -> y without D*u. None: the ideal model."""

    def ssm_parameters(self) -> list[nn.Parameter]:
        """Parameters that train with a small learning rate and no weight decay."""
        return [self.log_dt, self.log_a_re, self.a_im, self.b, self.c]

    def _discretize_float(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float Abar, Bbar and C, complex (H, N/2).

        Abar is the usual discretization times `a_range`: every mode then lies inside the fixed
        dynamic range |Abar| <= a_range, in the float phase of training too (an extra leak per
        step; a_range = 1 is plain S4D).
        """
        a = torch.complex(-torch.exp(self.log_a_re), self.a_im)
        b, c = torch.view_as_complex(self.b), torch.view_as_complex(self.c)
        dt = torch.exp(self.log_dt)[:, None]
        if self.discretization == "zoh":
            a_bar = torch.exp(dt * a)
            return self.a_range * a_bar, (a_bar - 1) / a * b, c
        a_bar = (1 + dt * a / 2) / (1 - dt * a / 2)
        return self.a_range * a_bar, dt * b / (1 - dt * a / 2), c

    def discretize(self) -> DiscreteKernels:
        """Abar, Bbar, C, D: quantized when `bits` is set, else float."""
        a_bar, b_bar, c = self._discretize_float()
        if not self.bits:
            return DiscreteKernels(a_bar, b_bar, c, self.d)
        noise = self.noise_levels if self.training else 0.0
        a_bar = torch.complex(*quant.fake_quantize(
            a_bar.real, a_bar.imag, self.a_step, self.bits, in_disc=True, noise_levels=noise))
        b_step, c_step = self._bc_step(b_bar), self._bc_step(c)
        return DiscreteKernels(a_bar, self._quantize_bc(b_bar, b_step, noise),
                               self._quantize_bc(c, c_step, noise), self.d,
                               self.a_step, b_step, c_step)

    def _bc_step(self, z: torch.Tensor) -> torch.Tensor:
        """Step of Bbar or C: Abar's fixed one ("shared" ranges) or from its max-abs."""
        if self.ranges == "shared":
            return self.a_step
        return quant.max_abs_step(z.real, z.imag, self.bits)

    def _quantize_bc(self, z: torch.Tensor, step: torch.Tensor, noise: float) -> torch.Tensor:
        return torch.complex(*quant.fake_quantize(z.real, z.imag, step, self.bits,
                                                  noise_levels=noise))

    @torch.no_grad()
    def levels(self) -> KernelLevels:
        """The integer levels and steps deployed to hardware (requires `bits`)."""
        if not self.bits:
            raise ValueError("the kernel is not quantized (bits is None)")
        a_bar, b_bar, c = self._discretize_float()
        a_re, a_im = quant.complex_levels(a_bar.real, a_bar.imag, self.a_step, self.bits, True)
        b_step = self._bc_step(b_bar).clone()
        b_re, b_im = quant.complex_levels(b_bar.real, b_bar.imag, b_step, self.bits)
        c_step = self._bc_step(c).clone()
        c_re, c_im = quant.complex_levels(c.real, c.imag, c_step, self.bits)
        return KernelLevels(a_re, a_im, self.a_step.clone(), b_re, b_im, b_step,
                            c_re, c_im, c_step)

    def kernel(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolution kernel K (H, L) = 2 Re sum_n C Bbar Abar**l, and D (H,)."""
        k = self.discretize()
        powers = vandermonde_powers(k.a_bar, length)  # (H, N/2, L)
        kernel = 2 * torch.einsum("hn,hnl->hl", k.c * k.b_bar, powers).real
        return kernel, k.d

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Convolution mode: u (B, H, L) -> y (B, H, L); through `loop` when one is set."""
        if self.loop is not None:
            k = self.discretize()
            return self.loop(k, u, self.training) + k.d[:, None] * u
        length = u.shape[-1]
        kernel, d = self.kernel(length)
        k_f = torch.fft.rfft(kernel, n=2 * length)
        u_f = torch.fft.rfft(u, n=2 * length)
        y = torch.fft.irfft(u_f * k_f, n=2 * length)[..., :length]
        return y + d[:, None] * u

    def step_forward(self, u: torch.Tensor) -> torch.Tensor:
        """Recurrent mode, one step at a time: u (B, H, L) -> y (B, H, L)."""
        k = self.discretize()
        x = torch.zeros(u.shape[0], self.h, self.n // 2, dtype=k.a_bar.dtype, device=u.device)
        ys = []
        for t in range(u.shape[-1]):
            x = k.a_bar * x + k.b_bar * u[:, :, t, None]
            ys.append(2 * (k.c * x).sum(-1).real + k.d * u[:, :, t])
        return torch.stack(ys, dim=-1)
