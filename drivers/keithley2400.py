"""Keithley 2400-series source-measure units, in the 2400's SCPI (the subset calibration needs).

Sources a voltage and measures current, for reference measurements of single devices routed
to the board's SMU port. The emulated board's SMU (`imssa-hw emulate --smu-port`) speaks the
same subset (docs/emulator.md). A 2450 speaks this too in its "SCPI 2400" command-set mode;
in its own mode it is `Keithley2450`.
"""

from __future__ import annotations

from imssa_hw.drivers.instrument import control, in_range, one_of
from imssa_hw.drivers.smu import SourceMeter


def _on_off(text: str) -> bool:
    return text.strip().upper() in ("1", "ON")


class Keithley2400(SourceMeter):
    """A Keithley 2400-series SMU in voltage-source, current-measure mode."""

    models = ("2400", "2401", "2410", "2420", "2425", "2430", "2440")

    source_voltage_v = control(
        ":SOUR:VOLT:LEV?", ":SOUR:VOLT:LEV %.6e",
        "Source voltage in V (the 2400 allows +-210 V; keep read voltages small).",
        in_range(-210.0, 210.0))
    compliance_current_a = control(
        ":SENS:CURR:PROT?", ":SENS:CURR:PROT %.6e",
        "Current compliance in A (1 nA .. 1.05 A).", in_range(1e-9, 1.05))
    output_enabled = control(
        ":OUTP?", ":OUTP %s", "Output on (True) or off (False).",
        one_of({True: "ON", False: "OFF"}), parse=_on_off)

    def configure_voltage_source(self, compliance_current_a: float) -> None:
        self.write("*RST")
        self.write(":SOUR:FUNC VOLT")
        self.write(':SENS:FUNC "CURR"')
        self.compliance_current_a = compliance_current_a
        self.source_voltage_v = 0.0

    def measure_current_a(self) -> float:
        """:MEAS:CURR? answers V,I[,...]: the current is field 2."""
        answer = self.query(":MEAS:CURR?")
        return self._reading(answer, 1 if "," in answer else 0)
