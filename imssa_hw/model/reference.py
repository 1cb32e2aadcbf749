"""The quantized classifier in numpy: the host-side twin of `imssa_hw.training.classifier`.

At deployment the digital parts (encoder, GELU, GLU mix, residual, LayerNorm, pooling,
decoder, D*u) run on the host and only the S4D recurrences run on the crossbar. `forward`
takes the recurrence as a callable, so the same code computes the software reference (the
ideal recurrence below) and the hardware result (the compiler's executor on measured
conductances).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from imssa_hw.model.checkpoint import Checkpoint, QuantizedKernels

# (layer, u (B, L, H)) -> SSM output without D*u, (B, L, H)
Recurrence = Callable[[int, np.ndarray], np.ndarray]


def ideal_recurrence(kernels: QuantizedKernels, u: np.ndarray) -> np.ndarray:
    """x_t = Abar x_{t-1} + Bbar u_t, y_t = 2 Re(C x_t), all kernels at once: u (B, L, H)."""
    return _run_recurrence(kernels, u)[0]


def _run_recurrence(kernels: QuantizedKernels, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outputs (B, L, H) and the largest |Re x|, |Im x| per kernel (H,)."""
    a_bar, b_bar, c = kernels.complex_values()
    x = np.zeros((u.shape[0], *a_bar.shape), dtype=np.complex128)
    y = np.empty(u.shape, dtype=np.float64)
    x_max = np.zeros(a_bar.shape[0])
    for t in range(u.shape[1]):
        x = a_bar * x + b_bar * u[:, t, :, None]
        y[:, t] = 2 * (c * x).sum(-1).real
        x_max = np.maximum(x_max, np.maximum(np.abs(x.real), np.abs(x.imag)).max(axis=(0, 2)))
    return y, x_max


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # a quarter second to import: only where a model runs

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def encode(ckpt: Checkpoint, features: np.ndarray) -> np.ndarray:
    """Features (B, L, F) -> the first S4D layer's input (B, L, H)."""
    t = ckpt.tensors
    return features.astype(np.float64) @ t["encoder.weight"].T.astype(np.float64) + t["encoder.bias"]


def forward(ckpt: Checkpoint, features: np.ndarray, recurrence: Recurrence | None = None
            ) -> np.ndarray:
    """Logits (B, classes) of the quantized model on features (B, L, F).

    `recurrence(layer, u)` computes the SSM output without D*u; by default the ideal one.
    """
    return _forward(ckpt, features, recurrence)[0]


def signal_ranges(ckpt: Checkpoint, features: np.ndarray) -> list[dict[str, list[float]]]:
    """Per layer, the largest |u| and |x| component of every kernel on `features`.

    Stored in checkpoints (from the training set) so the compiler can scale the row voltages
    of the state and input without the data.
    """
    return _forward(ckpt, features, None)[1]


def _forward(ckpt: Checkpoint, features: np.ndarray, recurrence: Recurrence | None):
    t = ckpt.tensors
    z = encode(ckpt, features)
    ranges = []
    for layer in range(ckpt.config.n_layers):
        kernels = ckpt.kernels(layer)
        if recurrence:
            y = recurrence(layer, z)
        else:
            y, x_max = _run_recurrence(kernels, z)
            ranges.append({"u_max": np.abs(z).max(axis=(0, 1)).tolist(), "x_max": x_max.tolist()})
        y = _gelu(y + kernels.d * z)
        p = f"blocks.{layer}"
        mixed = y @ t[f"{p}.mix.weight"].T + t[f"{p}.mix.bias"]
        h = ckpt.config.h
        y = mixed[..., :h] / (1 + np.exp(-mixed[..., h:]))
        z = _layer_norm(z + y, t[f"{p}.norm.weight"], t[f"{p}.norm.bias"])
    return z.mean(axis=1) @ t["decoder.weight"].T + t["decoder.bias"], ranges
