"""The emulated board's clock: wall time, optionally accelerated, kept across restarts.

Device physics (relaxation, retention drift) runs on this clock. With `time_scale` > 1 every
wall-clock second counts as `time_scale` seconds, so that a day of retention passes in seconds
(`imssa-hw emulate --time-scale 2880`: a day in 30 s). The clock is saved with the board's state;
a restarted emulator goes on from where the last one stopped, the time in between counted at
the normal rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorClock:
    """Emulated time t = origin_emulated_s + (wall - origin_wall_s) * time_scale, seconds."""

    origin_wall_s: float
    origin_emulated_s: float
    time_scale: float = 1.0

    @classmethod
    def starting_now(cls, time_scale: float = 1.0) -> EmulatorClock:
        """A clock that reads the wall time now and then runs `time_scale` times faster."""
        wall = time.time()
        return cls(wall, wall, time_scale)

    def now(self, wall_s: float | None = None) -> float:
        """Emulated time (Unix seconds) at wall-clock time `wall_s` (default: now)."""
        wall = time.time() if wall_s is None else wall_s
        return self.origin_emulated_s + (wall - self.origin_wall_s) * self.time_scale

    def restarted(self, saved_wall_s: float, time_scale: float = 1.0) -> EmulatorClock:
        """The clock of an emulator started now whose predecessor last saved at `saved_wall_s`:
        the predecessor's time at that moment, plus the wall time since at the normal rate."""
        wall = time.time()
        emulated = self.now(saved_wall_s) + max(wall - saved_wall_s, 0.0)
        return EmulatorClock(wall, emulated, time_scale)
