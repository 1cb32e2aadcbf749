"""The names of the write-verify strategies (a light module: the command line imports it)."""

from enum import StrEnum


class StrategyName(StrEnum):
    """A strategy of `imssa-hw program --strategy` (docs/programming.md)."""

    ADAPTIVE = "adaptive"
    """Per-device adaptive write-verify."""
    RAMP = "ramp"
    """The HPE host software's incremental ramp (the baseline)."""
    OPEN_LOOP = "open_loop"
    """One RESET, then one SET at the curve's gate for the target; measured, not verified."""
    REFRESH = "refresh"
    """`adaptive` for devices programmed earlier (`imssa-hw program --refresh`)."""
