"""The S4D sequence classifier: encoder -> S4D blocks -> mean pooling -> decoder.

Each block (the reference S4D block): y = S4D(x) -> GELU -> dropout -> 1x1 conv H->2H -> GLU,
then residual and LayerNorm (post-norm). Only the S4D kernels go to the crossbar; the rest runs
on the host (see `imssa_hw.model.reference` for the numpy twin used at deployment).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from imssa_hw.board.profile import BoardProfile
from imssa_hw.errors import BadInput
from imssa_hw.model.checkpoint import KERNEL_FIELDS, Checkpoint, write_checkpoint
from imssa_hw.model.config import ModelConfig
from imssa_hw.training.s4d import S4DKernel

if TYPE_CHECKING:
    from imssa_hw.model.loop_scales import LayerScales


class S4DBlock(nn.Module):
    """S4D -> GELU -> dropout -> 1x1 conv (H -> 2H) -> GLU, with residual and LayerNorm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ssm = S4DKernel(cfg.h, cfg.n, init=cfg.init, discretization=cfg.discretization,
                             dt_min=cfg.dt_min, dt_max=cfg.dt_max, bits=cfg.bits,
                             a_range=cfg.a_range, ranges=cfg.ranges,
                             noise_levels=cfg.noise_levels)
        self.dropout = nn.Dropout(cfg.dropout)
        self.mix = nn.Linear(cfg.h, 2 * cfg.h)
        self.norm = nn.LayerNorm(cfg.h)

    def forward(self, x: torch.Tensor, recurrent: bool = False) -> torch.Tensor:
        """x (B, L, H) -> (B, L, H)."""
        u = x.transpose(1, 2)
        y = self.ssm.step_forward(u) if recurrent else self.ssm(u)
        y = self.dropout(nn.functional.gelu(y.transpose(1, 2)))
        y = nn.functional.glu(self.mix(y), dim=-1)
        return self.norm(x + self.dropout(y))


class S4DClassifier(nn.Module):
    """Linear encoder, S4D blocks, mean pooling over time, linear decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = nn.Linear(cfg.d_input, cfg.h)
        self.blocks = nn.ModuleList(S4DBlock(cfg) for _ in range(cfg.n_layers))
        self.decoder = nn.Linear(cfg.h, cfg.n_classes)

    def forward(self, x: torch.Tensor, recurrent: bool = False) -> torch.Tensor:
        """Features (B, L, F) -> logits (B, classes). `recurrent` uses the step mode."""
        z = self.encoder(x)
        for block in self.blocks:
            z = block(z, recurrent=recurrent)
        return self.decoder(z.mean(dim=1))

    def parameter_groups(self, lr: float, ssm_lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: SSM parameters with `ssm_lr` and no weight decay (as S4D does)."""
        ssm = [p for b in self.blocks for p in b.ssm.ssm_parameters()]
        ssm_ids = {id(p) for p in ssm}
        rest = [p for p in self.parameters() if id(p) not in ssm_ids]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": ssm, "lr": ssm_lr, "weight_decay": 0.0}]


def export_tensors(model: S4DClassifier) -> dict[str, np.ndarray]:
    """Float weights plus, for a quantized model, each layer's integer levels and steps."""
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    if model.cfg.bits:
        for i, block in enumerate(model.blocks):
            levels = block.ssm.levels()
            for name in KERNEL_FIELDS:
                value = getattr(levels, name).cpu().numpy()
                dtype = np.float32 if name.endswith("step") else np.int16
                tensors[f"kernels.{i}.{name}"] = value.astype(dtype)
    return tensors


def as_checkpoint(model: S4DClassifier) -> Checkpoint:
    """The model as an unsaved checkpoint (numpy), to measure its signals."""
    return Checkpoint(model.cfg, export_tensors(model), {}, "")


def save_model(path: str | Path, model: S4DClassifier, meta: dict,
               range_features: np.ndarray | None = None,
               board: BoardProfile | None = None,
               scales: list[LayerScales] | None = None) -> str:
    """Write `model` as a safe checkpoint; returns its digest.

    With `range_features` (e.g. the training set) a quantized model's checkpoint also records
    `meta["signal_ranges"]`: per layer the largest |u| and |x| of each kernel; with `board`
    too, `meta["loop_scales"]`: the state scales and TIA ranges for that board
    (`model.loop_scales`, the state scales fitted to its converters by
    `hardware_aware.fit_state_gains`), which the compiler then uses: `scales` where training
    has fitted them already (`TrainResult.loop_scales`), else measured and fitted here.
    """
    if range_features is not None and model.cfg.bits:
        from imssa_hw.model.loop_scales import DEFAULT_HEADROOM, loop_scales, scales_record
        from imssa_hw.model.reference import signal_ranges

        probe = as_checkpoint(model)
        meta = {**meta, "signal_ranges": signal_ranges(probe, range_features)}
        if board is not None:
            from imssa_hw.training.hardware_aware import fit_state_gains

            if scales is None:
                scales = fit_state_gains(model, range_features, board, loop_scales(
                    probe, range_features, board, DEFAULT_HEADROOM))
            meta["loop_scales"] = scales_record(scales, board, DEFAULT_HEADROOM)
    return write_checkpoint(path, export_tensors(model), model.cfg, meta)


def model_from_checkpoint(ckpt: Checkpoint) -> S4DClassifier:
    """Rebuild the torch model of a loaded checkpoint (in eval mode)."""
    model = S4DClassifier(ckpt.config)
    state = {k: torch.from_numpy(np.array(v)) for k, v in ckpt.tensors.items()
             if not k.startswith("kernels.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise BadInput(f"checkpoint weights do not fit its config: {str(exc).splitlines()[0]}") from None
    return model.eval()
