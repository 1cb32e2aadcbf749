"""A model in the layout of the S4D reference implementation (state-spaces/s4), written for the
tests: the `S4DKernel` and `S4D` of `models/s4/s4d.py` and the `S4Model` of `example.py`, with
their parameter names and shapes (checked against the public source: `D` (H,);
`kernel.log_dt` (H,), `kernel.C` (H, N/2, 2) the real view of a complex tensor,
`kernel.log_A_real`, `kernel.A_imag` (H, N/2); `output_linear` Conv1d(H, 2H, 1) then GLU over
channels; `encoder`, `s4_layers`, `norms` (post-norm), `decoder`). The layout is the
reference's, the code is ours: the kernel is computed as the reference computes it (ZOH with
B = 1, Vandermonde of exp(dt A l), FFT convolution)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class ReferenceKernel(nn.Module):
    """Diagonal SSM kernel K (H, L) = 2 Re sum_n C (exp(dt A) - 1) / A exp(dt A l)."""

    def __init__(self, h: int, n: int, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        span = math.log(dt_max) - math.log(dt_min)
        self.log_dt = nn.Parameter(torch.rand(h) * span + math.log(dt_min))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n // 2, dtype=torch.cfloat)))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n // 2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n // 2).float().repeat(h, 1))

    def forward(self, length: int) -> torch.Tensor:
        dt_a = (-torch.exp(self.log_A_real) + 1j * self.A_imag) * torch.exp(self.log_dt)[:, None]
        a = dt_a / torch.exp(self.log_dt)[:, None]
        c = torch.view_as_complex(self.C) * (torch.exp(dt_a) - 1) / a
        powers = torch.exp(dt_a[..., None] * torch.arange(length))
        return 2 * torch.einsum("hn,hnl->hl", c, powers).real


class ReferenceS4D(nn.Module):
    """S4D layer on (B, H, L): kernel convolution + D u, GELU, dropout, Conv1d(H, 2H, 1), GLU."""

    def __init__(self, h: int, n: int, dropout: float = 0.0, **kernel_args):
        super().__init__()
        self.D = nn.Parameter(torch.randn(h))
        self.kernel = ReferenceKernel(h, n, **kernel_args)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_linear = nn.Sequential(nn.Conv1d(h, 2 * h, kernel_size=1), nn.GLU(dim=-2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        k_f = torch.fft.rfft(self.kernel(length), n=2 * length)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * k_f, n=2 * length)[..., :length]
        y = self.dropout(self.activation(y + u * self.D[:, None]))
        return self.output_linear(y)


class ReferenceModel(nn.Module):
    """example.py's S4Model, post-norm: encoder, S4D layers with residual, mean pool, decoder."""

    def __init__(self, d_input: int, d_output: int, h: int, n: int, n_layers: int,
                 dropout: float = 0.1, **kernel_args):
        super().__init__()
        self.encoder = nn.Linear(d_input, h)
        self.s4_layers = nn.ModuleList(ReferenceS4D(h, n, dropout, **kernel_args)
                                       for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(n_layers))
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in range(n_layers))
        self.decoder = nn.Linear(h, d_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d_input) -> logits (B, d_output)."""
        x = self.encoder(x).transpose(-1, -2)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            x = norm((dropout(layer(x)) + x).transpose(-1, -2)).transpose(-1, -2)
        return self.decoder(x.transpose(-1, -2).mean(dim=1))


def train_reference(model: ReferenceModel, x: np.ndarray, y: np.ndarray, epochs: int,
                    seed: int, lr: float = 1e-2, batch_size: int = 64) -> ReferenceModel:
    """Train `model` on raw x (n, L, F) with AdamW (the SSM parameters at lr/10 without weight
    decay, as the reference does); returns it in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ssm = [p for layer in model.s4_layers for p in layer.kernel.parameters()]
    ids = {id(p) for p in ssm}
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in ids]},
        {"params": ssm, "lr": lr / 10, "weight_decay": 0.0}], lr=lr)
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(y)), max(1, len(y) // batch_size)):
            loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
