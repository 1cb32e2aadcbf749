"""Keithley 2450-series source-measure units (2450, 2460, 2461, 2470) in their own SCPI.

The current limit of a voltage source is `:SOUR:VOLT:ILIM` here (the 2400's
`:SENS:CURR:PROT` is refused), and `:MEAS:CURR?` answers the current alone.
"""

from __future__ import annotations

from imssa_hw.drivers.instrument import control, in_range, one_of
from imssa_hw.drivers.smu import SourceMeter


class Keithley2450(SourceMeter):
    """A Keithley 2450-series SMU in voltage-source, current-measure mode."""

    models = ("2450", "2460", "2461", "2470")

    source_voltage_v = control(
        ":SOUR:VOLT?", ":SOUR:VOLT:LEV %.6e",
        "Source voltage in V (the 2450 allows +-210 V; keep read voltages small).",
        in_range(-210.0, 210.0))
    compliance_current_a = control(
        ":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM %.6e",
        "Current limit of the voltage source in A (1 nA .. 1.05 A).", in_range(1e-9, 1.05))
    output_enabled = control(
        ":OUTP?", ":OUTP %s", "Output on (True) or off (False).",
        one_of({True: "ON", False: "OFF"}), parse=lambda text: text.strip() in ("1", "ON"))

    def configure_voltage_source(self, compliance_current_a: float) -> None:
        self.write("*RST")
        self.write(":SOUR:FUNC VOLT")
        self.write(':SENS:FUNC "CURR"')
        self.compliance_current_a = compliance_current_a
        self.source_voltage_v = 0.0

    def measure_current_a(self) -> float:
        return self._reading(self.query(":MEAS:CURR?"))
