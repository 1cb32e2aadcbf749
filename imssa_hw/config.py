"""Model configuration: plain data, no torch, so the numpy side (compiler) can read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

MAX_BITS = 8


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
    noise_levels: float = 0.0
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def __post_init__(self):
        if self.bits is not None and not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be 1..{MAX_BITS} or None (float), got {self.bits}")
        if self.init not in ("lin", "inv"):
            raise ValueError(f"init must be 'lin' or 'inv', got {self.init!r}")
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
