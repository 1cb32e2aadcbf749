"""Model and training configuration: plain data, no torch, so that the numpy side (compiler,
inference, the shipped models' recipe keys) reads it without torch installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from imssa_hw.config import Config

MAX_BITS = 8
# Where the steps of Bbar and C come from: "per_matrix" (each from its own max-abs, every
# matrix spans the whole conductance window) or "shared" (on Abar's fixed grid: one dynamic
# range for every kernel parameter, as in the paper). docs/model.md.
RANGES = ("per_matrix", "shared")


@dataclass(frozen=True)
class ModelConfig(Config):
    """Everything needed to rebuild the model; stored in every checkpoint."""

    WHAT: ClassVar[str] = "model config"

    d_input: int
    n_classes: int
    h: int = 16
    n: int = 4
    n_layers: int = 1
    init: str = "lin"
    discretization: str = "zoh"
    dropout: float = 0.1
    bits: int | None = 2
    a_range: float = 0.75
    ranges: str = "per_matrix"
    noise_levels: float = 0.0
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def __post_init__(self):
        if self.bits is not None and not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be 1..{MAX_BITS} or None (float), got {self.bits}")
        if self.init not in ("lin", "inv"):
            raise ValueError(f"init must be 'lin' or 'inv', got {self.init!r}")
        if self.ranges not in RANGES:
            raise ValueError(f"ranges must be one of {RANGES}, got {self.ranges!r}")
        if self.discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {self.discretization!r}")
        if self.n % 2:
            raise ValueError(f"state size n must be even (n/2 complex modes), got {self.n}")
        for name in ("d_input", "n_classes", "h", "n", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


DIGITS_MODEL = {"h": 64, "n": 8, "n_layers": 2, "a_range": 0.95}
TASK_MODELS: dict[str, dict] = {
    "zero-one": {"h": 16, "n": 4, "n_layers": 1},
    "digits": DIGITS_MODEL,
    "hd20": DIGITS_MODEL,
    "custom": DIGITS_MODEL,
}
"""Per-task ModelConfig defaults (bits aside). zero-one: the paper's one-layer model. Ten or
twenty classes need a larger one with longer memory (|Abar| up to 0.95): measured on real
speech in docs/data.md."""
TASK_EPOCHS = 40


def task_model(task: str, **changes) -> dict:
    """The ModelConfig fields (no d_input, n_classes) of `task`'s default model, with
    `changes` (None values ignored) applied."""
    return {**TASK_MODELS[task], **{k: v for k, v in changes.items() if v is not None}}


HARDWARE_FRACTION = 0.25
"""Share of the epochs trained through the board's loop when training is hardware-aware."""
LOOP_CONSISTENCY = 4.0
"""`TrainConfig.loop_consistency` by default (docs/model.md, hardware-aware training)."""


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimizer and schedule settings."""

    WHAT: ClassVar[str] = "training settings"

    epochs: int = TASK_EPOCHS
    float_fraction: float = 0.4
    batch_size: int = 64
    lr: float = 1e-2
    ssm_lr: float = 1e-3
    weight_decay: float = 0.01
    validation_fraction: float = 0.1
    seed: int = 0
    time_masks: int = 0
    """SpecAugment: masks of up to `mask_fraction` of the frames per training sample."""
    freq_masks: int = 0
    """SpecAugment: masks of up to `mask_fraction` of the features per training sample."""
    mask_fraction: float = 0.15
    hardware_fraction: float = 0.0
    """Share of the epochs, at the end, run through the board's loop (hardware-aware
    training, `imssa_hw.training.hardware_aware`); 0 turns it off. Needs a board profile."""
    loop_consistency: float = LOOP_CONSISTENCY
    """In the hardware phase, each batch also runs the ideal recurrence (the software model):
    its cross-entropy is added, and this weight times the mean squared difference of the two
    paths' logits, so that the board's loop and the software decide alike; 0 trains the loop
    alone."""

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if not 0 < self.float_fraction < 1:
            raise ValueError(f"float_fraction must be in (0, 1), got {self.float_fraction}")
        if not 0 <= self.hardware_fraction < 1 - self.float_fraction:
            raise ValueError(f"hardware_fraction must be in [0, {1 - self.float_fraction:g}), "
                             f"got {self.hardware_fraction}")
        if self.loop_consistency < 0:
            raise ValueError(f"loop_consistency must be >= 0, got {self.loop_consistency}")

    def phase_epochs(self, quantized: bool, hardware: bool) -> tuple[int, int]:
        """Epochs of the float phase and of the hardware phase (the QAT phase has the rest)."""
        if not quantized:
            return self.epochs, 0
        float_epochs = min(self.epochs - 1, max(1, round(self.epochs * self.float_fraction)))
        hardware_epochs = (min(self.epochs - float_epochs,
                               max(1, round(self.epochs * self.hardware_fraction)))
                           if hardware and self.hardware_fraction else 0)
        return float_epochs, hardware_epochs
