"""What the frozen dataclasses of knobs (`SynthSpec`, `AugmentSpec`) share: (low, high) ranges
validated on construction, and a JSON round trip that refuses unknown keys."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from imssa_hw.errors import BadInput


class Knobs:
    """Mixin for a frozen dataclass whose tuple-valued fields are (low, high) ranges."""

    WHAT: ClassVar[str] = "settings"
    """How errors name these knobs, e.g. "synthetic"."""

    def _check_ranges(self) -> None:
        """Make every range field (a field whose default is a pair of numbers) a (low, high)
        pair of floats, or raise BadInput."""
        for f in dataclasses.fields(self):
            if not (isinstance(f.default, tuple) and len(f.default) == 2
                    and all(isinstance(v, (int, float)) for v in f.default)):
                continue
            value = getattr(self, f.name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise BadInput(f"{self.WHAT} setting {f.name} must be a (low, high) pair, "
                               f"got {value!r}") from None
            if not lo <= hi:
                raise BadInput(f"{self.WHAT} setting {f.name} has low > high: {value!r}")
            object.__setattr__(self, f.name, (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of `to_dict`; unknown keys are BadInput."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise BadInput(f"unknown {cls.WHAT} settings: {', '.join(unknown)}")
        return cls(**d)
