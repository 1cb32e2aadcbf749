"""Chip-in-the-loop fine-tuning: retrain the digital parts against the programmed hardware.

After programming, the conductances the board holds differ from the targets (within the
write-verify tolerance, and off cells spread around the RESET floor). Every crossbar layer is
still a linear time-invariant system, so its behaviour is captured by impulse responses
measured on the read-back maps with the compiler's executor: K[l, out, in], cross-talk between
kernels included, plus one lead tap: the output columns are read one step after the input
rows drive the array, so the off cells where input rows cross output columns leak the next
input into each output (zero on the ideal maps, not on programmed ones). The S4D kernels stay
as programmed; the encoder, D, the GLU mix, the norms and the decoder are retrained with
those measured responses in place of the ideal kernels.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from imssa_hw.compiler import Executor
from imssa_hw.compiler.artifact import Deployment
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.model.checkpoint import Checkpoint, write_checkpoint
from imssa_hw.training.classifier import S4DClassifier, model_from_checkpoint
from imssa_hw.model.config import TrainConfig
from imssa_hw.training.trainer import accuracy, train_digital


def impulse_responses(dep: Deployment, maps_siemens: np.ndarray, layer: int, length: int,
                      amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """(K (length, H_out, H_in), lead (H_out, H_in)): the layer's response on `maps_siemens` to
    a unit impulse on each input channel, y[t] = sum_s K[s] u[t - s] + lead u[t + 1] (measured
    with an impulse of `amplitude`, inside the voltage range, one step into the sequence)."""
    h = dep.config.h
    u = np.zeros((h, length + 1, h))
    u[np.arange(h), 1, np.arange(h)] = amplitude
    y = Executor.on_maps(dep.schedule, maps_siemens)(layer, u)  # (H_in, L + 1, H_out)
    response = np.transpose(y, (1, 2, 0)) / amplitude
    return response[1:], response[0]


class MeasuredSSM(nn.Module):
    """An SSM whose response is the measured K and lead tap (fixed) plus a trainable digital D.

    When no channel responds to another (each kernel runs alone on its rows and columns, the
    compiler's default), the response is kept per channel and applied as H convolutions; with
    cross-talk (kernels sharing a VMM) as the full H x H convolution."""

    def __init__(self, kernel: np.ndarray, lead: np.ndarray, d: torch.Tensor):
        super().__init__()
        off_diagonal = ~np.eye(kernel.shape[1], dtype=bool)
        self.per_channel = not (kernel[:, off_diagonal].any() or lead[off_diagonal].any())
        if self.per_channel:
            kernel, lead = np.diagonal(kernel, axis1=1, axis2=2), np.diagonal(lead)
        self.register_buffer("kernel", torch.as_tensor(np.ascontiguousarray(kernel),
                                                       dtype=torch.float32))
        self.register_buffer("lead", torch.as_tensor(np.ascontiguousarray(lead),
                                                     dtype=torch.float32))
        self.d = nn.Parameter(d.detach().clone())

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, H, L) -> y (B, H, L): causal convolution with K, the lead tap on the next
        input, plus D*u."""
        length = u.shape[-1]
        u_f = torch.fft.rfft(u, n=2 * length)
        u_next = nn.functional.pad(u[..., 1:], (0, 1))
        if self.per_channel:
            k_f = torch.fft.rfft(self.kernel[:length].T, n=2 * length)  # (H, F)
            y = torch.fft.irfft(u_f * k_f, n=2 * length)[..., :length]
            return y + self.lead[:, None] * u_next + self.d[:, None] * u
        k = self.kernel[:length].permute(1, 2, 0)  # (out, in, L)
        k_f = torch.fft.rfft(k, n=2 * length)
        y = torch.fft.irfft(torch.einsum("bif,oif->bof", u_f, k_f), n=2 * length)[..., :length]
        return y + torch.einsum("oi,bil->bol", self.lead, u_next) + self.d[:, None] * u


@dataclass
class FinetuneResult:
    checkpoint_tensors: dict[str, np.ndarray]
    accuracy_before: float
    accuracy_after: float
    validation_accuracy: list[float] | None = None
    """With a validation part: its accuracy untuned, then after each epoch."""
    epoch_kept: int | None = None
    """With a validation part: the epoch whose state was kept (0: untuned)."""


def measured_model(ckpt: Checkpoint, dep: Deployment, maps_siemens: np.ndarray, length: int
                   ) -> S4DClassifier:
    """The checkpoint's model with every S4D layer replaced by its measured response."""
    model = model_from_checkpoint(ckpt)
    for layer, block in enumerate(model.blocks):
        u_max = ckpt.meta.get("signal_ranges", [{}] * (layer + 1))[layer].get("u_max")
        amplitude = 0.5 * float(np.min(u_max)) if u_max else 0.1
        kernel, lead = impulse_responses(dep, maps_siemens, layer, length, amplitude)
        block.ssm = MeasuredSSM(kernel, lead, block.ssm.d)
    return model


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread inside the `with` block. Fine-tuning trains only the digital parts of
    a small model, as fast on one thread; on a busy machine torch's second thread spins: the
    zero-one demo's fine-tuning took 65 CPU-s on two threads against 4.8 on one (docs/results.md,
    test suite)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def finetune(ckpt: Checkpoint, dep: Deployment, maps_siemens: np.ndarray, x_train: np.ndarray,
             y_train: np.ndarray, epochs: int = 15, seed: int = 0,
             split: tuple[np.ndarray, np.ndarray] | None = None) -> FinetuneResult:
    """Retrain the digital parts on the measured hardware; returns the new tensors (kernels
    unchanged) and the training-split accuracy of the hardware model before and after.

    With `split` (fit, validation indices: held-out speakers, `TaskData.validation_split`) the
    parts train on the fit part and the state kept is the one that classifies the validation
    part best, the untuned one included (on ties the earlier): tuning that only fits the
    training speakers is not kept. Without it, the state after the last epoch."""
    with one_torch_thread():
        return _finetune(ckpt, dep, maps_siemens, x_train, y_train, epochs, seed, split)


def _finetune(ckpt: Checkpoint, dep: Deployment, maps_siemens: np.ndarray, x_train: np.ndarray,
              y_train: np.ndarray, epochs: int, seed: int,
              split: tuple[np.ndarray, np.ndarray] | None) -> FinetuneResult:
    model = measured_model(ckpt, dep, maps_siemens, x_train.shape[1])
    before = accuracy(model, x_train, y_train)
    fit = np.arange(len(y_train)) if split is None else split[0]
    scores: list[float] = []
    best: dict = {}

    def keep_best(epoch: int) -> None:
        scores.append(accuracy(model, x_train[split[1]], y_train[split[1]]))
        if epoch == 0 or scores[-1] > max(scores[:-1]):
            best.update(epoch=epoch, state=copy.deepcopy(model.state_dict()))

    if split is not None:
        keep_best(0)
    train_digital(model, x_train[fit], y_train[fit], TrainConfig(epochs=epochs, seed=seed, lr=2e-3),
                  after_epoch=keep_best if split is not None else None)
    if split is not None:
        model.load_state_dict(best["state"])
    after = accuracy(model, x_train, y_train)
    tensors = dict(ckpt.tensors)
    for name, value in model.state_dict().items():
        if name in tensors and not name.endswith("kernel"):
            tensors[name] = value.detach().cpu().numpy().astype(tensors[name].dtype)
    return FinetuneResult(tensors, before, after, scores or None, best.get("epoch"))


def save_finetuned(path, ckpt: Checkpoint, result: FinetuneResult, info: dict) -> str:
    """Write the fine-tuned checkpoint; it names the checkpoint it was tuned from."""
    meta = {**ckpt.meta, "finetuned_from": ckpt.digest, "finetune": info}
    return write_checkpoint(path, result.checkpoint_tensors, ckpt.config, meta)


def finetune_on_board(board: BoardLike, dep: Deployment, ckpt: Checkpoint, out, calibration=None,
                      epochs: int = 15) -> dict:
    """Read the board's maps, fine-tune on the model's training split (the state kept
    chosen on its held-out speakers), write `out`."""
    from imssa_hw.data import DataSpec, load_data
    from imssa_hw.hil.inference import read_maps

    dep.check_board(board.info)
    maps, _ = read_maps(board, dep, calibration)
    data = load_data(DataSpec.of_checkpoint(ckpt.meta))
    seed = int(ckpt.meta.get("seed", 0))
    split = data.validation_split(TrainConfig().validation_fraction, seed)
    result = finetune(ckpt, dep, maps, data.x_train, data.y_train, epochs=epochs, seed=seed,
                      split=split)
    summary = {"accuracy_before": result.accuracy_before, "accuracy_after": result.accuracy_after,
               "validation_accuracy": result.validation_accuracy,
               "epoch_kept": result.epoch_kept, "epochs": epochs, "split": "train",
               "checkpoint": str(out)}
    save_finetuned(out, ckpt, result, summary)
    return summary


def kept_epoch(summary: dict) -> str:
    """One phrase on the state `finetune_on_board` kept, for the command line."""
    scores, epoch = summary.get("validation_accuracy"), summary.get("epoch_kept")
    if not scores:
        return f"the last of {summary['epochs']} epochs"
    kept = "untuned" if epoch == 0 else f"epoch {epoch} of {summary['epochs']}"
    return (f"kept {kept}: held-out speakers {100 * scores[0]:.2f} % untuned, "
            f"{100 * scores[epoch]:.2f} % kept")
