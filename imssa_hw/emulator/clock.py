"""The emulated board's clock: wall time, optionally accelerated, kept across restarts.

Device physics (relaxation, retention drift) runs on this clock. With `time_scale` > 1 every
wall-clock second counts as `time_scale` seconds, so that a day of retention passes in seconds
(`imssa-hw emulate --time-scale 2880`: a day in 30 s). The clock is saved with the board's state;
a restarted emulator goes on from where the last one stopped, the time in between counted at
the normal rate.

The wall clock it reads is `time.time` unless told otherwise: a board in the test's own process
(`emu://?clock=virtual`) reads this process's `VIRTUAL` time instead, which stands still until
a programming run given `clock=VIRTUAL.now, sleep=VIRTUAL.sleep` waits: the wait then costs no
real time, and what the devices did meanwhile does not depend on the machine's speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


class VirtualTime:
    """A wall clock (Unix seconds) that moves only when slept on."""

    def __init__(self, start_s: float) -> None:
        self._t = float(start_s)

    def now(self) -> float:
        """The time now, s."""
        return self._t

    def sleep(self, seconds: float) -> None:
        """Move the time on by `seconds` at once."""
        self._t += max(0.0, float(seconds))


VIRTUAL = VirtualTime(time.time())
"""This process's virtual wall clock (`emu://?clock=virtual`), starting at the import's time."""
VIRTUAL_WAITS = (VIRTUAL.now, VIRTUAL.sleep)
"""(clock, sleep) for work against a board on virtual time: `imssa_hw.calibrate(board,
waits=VIRTUAL_WAITS)`, `imssa_hw.program(..., waits=VIRTUAL_WAITS)`; no real time passes."""
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.time, "virtual": VIRTUAL.now}
"""The wall clocks an emulated board can read, by name."""


@dataclass(frozen=True)
class EmulatorClock:
    """Emulated time t = origin_emulated_s + (wall - origin_wall_s) * time_scale, seconds, the
    wall read from `source`."""

    origin_wall_s: float
    origin_emulated_s: float
    time_scale: float = 1.0
    source: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    """The wall clock (`CLOCKS`)."""

    @classmethod
    def starting_now(cls, time_scale: float = 1.0,
                     source: Callable[[], float] = time.time) -> EmulatorClock:
        """A clock that reads the wall time now and then runs `time_scale` times faster."""
        wall = source()
        return cls(wall, wall, time_scale, source)

    def wall(self) -> float:
        """The wall clock's time now, Unix seconds."""
        return self.source()

    def now(self, wall_s: float | None = None) -> float:
        """Emulated time (Unix seconds) at wall-clock time `wall_s` (default: now)."""
        wall = self.source() if wall_s is None else wall_s
        return self.origin_emulated_s + (wall - self.origin_wall_s) * self.time_scale

    def restarted(self, saved_wall_s: float, time_scale: float = 1.0) -> EmulatorClock:
        """The clock of an emulator started now on the same wall clock, whose predecessor last
        saved at `saved_wall_s`: the predecessor's time at that moment, plus the wall time since
        at the normal rate."""
        wall = self.source()
        emulated = self.now(saved_wall_s) + max(wall - saved_wall_s, 0.0)
        return EmulatorClock(wall, emulated, time_scale, self.source)
