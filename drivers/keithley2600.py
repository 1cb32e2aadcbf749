"""Keithley 2600-series source-measure units (2601-2636, A and B), channel A, in TSP.

TSP is Lua sent line by line: settings are assignments (`smua.source.levelv=0.2`), readings
come back through `print(...)`.
"""

from __future__ import annotations

from imssa_hw.drivers.instrument import control, in_range, one_of
from imssa_hw.drivers.smu import SourceMeter


class Keithley2600(SourceMeter):
    """A Keithley 2600-series SMU, channel A, in voltage-source, current-measure mode."""

    models = ("2601", "2602", "2604", "2611", "2612", "2614", "2634", "2635", "2636")

    source_voltage_v = control(
        "print(smua.source.levelv)", "smua.source.levelv=%.6e",
        "Source voltage in V (the 2600s allow +-40 V or +-200 V; keep read voltages small).",
        in_range(-200.0, 200.0))
    compliance_current_a = control(
        "print(smua.source.limiti)", "smua.source.limiti=%.6e",
        "Current limit of the voltage source in A (1 nA .. 1.5 A).", in_range(1e-9, 1.5))
    output_enabled = control(
        "print(smua.source.output)", "smua.source.output=%s", "Output on (True) or off (False).",
        one_of({True: "smua.OUTPUT_ON", False: "smua.OUTPUT_OFF"}),
        parse=lambda text: float(text) == 1.0)

    def configure_voltage_source(self, compliance_current_a: float) -> None:
        self.write("smua.reset()")
        self.write("smua.source.func=smua.OUTPUT_DCVOLTS")
        self.compliance_current_a = compliance_current_a
        self.source_voltage_v = 0.0

    def measure_current_a(self) -> float:
        return self._reading(self.query("print(smua.measure.i())"))
