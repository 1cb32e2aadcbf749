"""The write-verify strategies by name (`imssa-hw program --strategy`).

- `adaptive`: per-device adaptive write-verify (first gate from the SET curve, per-device SET
  response ratio and RESET voltage offset learned from each response, inner/outer tolerance,
  settle and re-verify delays, averaged reads, bounded attempts).
- `ramp`: the HPE host software's incremental ramp (the baseline).
- `open_loop`: one RESET, then one SET at the curve's gate for the target; measured, not verified.
- `refresh`: `adaptive` for devices programmed earlier (`imssa-hw program --refresh`).

Each lives in its own module over the device book of `programming.strategy`.
"""

from __future__ import annotations

from imssa_hw.errors import BadInput
from imssa_hw.programming.adaptive import AdaptiveStrategy
from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.open_loop import OpenLoopStrategy
from imssa_hw.programming.ramp import RampStrategy
from imssa_hw.programming.refresh import RefreshStrategy
from imssa_hw.programming.strategy import Strategy

STRATEGIES = {cls.name: cls for cls in (AdaptiveStrategy, RampStrategy, OpenLoopStrategy,
                                        RefreshStrategy)}


def make_strategy(name: StrategyName | str, *args, **kwargs) -> Strategy:
    """The strategy called `name`, made with the given arguments."""
    if name not in set(StrategyName):
        raise BadInput(f"unknown strategy {name!r}: choose one of {', '.join(StrategyName)}")
    return STRATEGIES[StrategyName(name)](*args, **kwargs)
