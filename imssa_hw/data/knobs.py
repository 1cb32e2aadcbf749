"""What the frozen dataclasses of knobs (`SynthSpec`, `AugmentSpec`) share: (low, high) ranges
validated on construction; their file form is `config.Config`'s."""

from __future__ import annotations

import dataclasses
from imssa_hw.config import Config
from imssa_hw.errors import BadInput


class Knobs(Config):
    """Mixin for a frozen dataclass whose tuple-valued fields are (low, high) ranges."""

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
                raise BadInput(f"{f.name} in the {self.WHAT} must be a (low, high) pair, "
                               f"got {value!r}") from None
            if not lo <= hi:
                raise BadInput(f"{f.name} in the {self.WHAT} has low > high: {value!r}")
            object.__setattr__(self, f.name, (lo, hi))
