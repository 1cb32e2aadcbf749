"""Keithley 2450-series source-measure units (2450, 2460, 2461, 2470) in their own SCPI.

The same commands as the 2400's but two: the current limit of a voltage source is
`:SOUR:VOLT:ILIM` here (the 2400's `:SENS:CURR:PROT` is refused), and `:MEAS:CURR?` answers
the current alone.
"""

from __future__ import annotations

from imssa_hw.drivers.instrument import control, in_range
from imssa_hw.drivers.keithley2400 import Keithley2400


class Keithley2450(Keithley2400):
    """A Keithley 2450-series SMU in voltage-source, current-measure mode."""

    models = ("2450", "2460", "2461", "2470")

    compliance_current_a = control(
        ":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM %.6e",
        "Current limit of the voltage source in A (1 nA .. 1.05 A).", in_range(1e-9, 1.05))

    def measure_current_a(self) -> float:
        return self._reading(self.query(":MEAS:CURR?"))
