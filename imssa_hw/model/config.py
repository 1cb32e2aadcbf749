"""Model configuration: plain data, no torch, so the numpy side (compiler) can read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

MAX_BITS = 8
# Where the steps of Bbar and C come from: "per_matrix" (each from its own max-abs, every
# matrix spans the whole conductance window) or "shared" (on Abar's fixed grid: one dynamic
# range for every kernel parameter, as in the paper). docs/model.md.
RANGES = ("per_matrix", "shared")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the model; stored in every checkpoint."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


DIGITS_MODEL = {"h": 64, "n": 8, "n_layers": 2, "a_range": 0.95}
TASK_MODELS: dict[str, dict] = {
    "zero-one": {"h": 16, "n": 4, "n_layers": 1},
    "digits": DIGITS_MODEL,
    "hd20": DIGITS_MODEL,
}
"""Per-task ModelConfig defaults (bits aside). zero-one: the paper's one-layer model. Ten or
twenty classes need a larger one with longer memory (|Abar| up to 0.95): measured on real
speech in docs/data.md."""
TASK_EPOCHS = 40


def task_model(task: str, **changes) -> dict:
    """The ModelConfig fields (no d_input, n_classes) of `task`'s default model, with
    `changes` (None values ignored) applied."""
    return {**TASK_MODELS[task], **{k: v for k, v in changes.items() if v is not None}}

