"""Keithley 2400/2450 source-measure unit (the SCPI subset calibration needs).

Sources a voltage and measures current, for reference measurements of single devices routed
to the board's SMU port. The emulated board's SMU (`imssa-hw emulate --smu-port`) speaks the
same subset (docs/emulator.md).
"""

from __future__ import annotations

from imssa_hw.drivers.instrument import InstrumentError, ScpiInstrument, control, in_range, one_of


def _on_off(text: str) -> bool:
    return text.strip().upper() in ("1", "ON")


class Keithley2400(ScpiInstrument):
    """A Keithley 2400-series SMU in voltage-source, current-measure mode."""

    name = "SMU"

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

    def check_identity(self) -> str:
        """Return *IDN? if it names a Keithley 24xx, else raise InstrumentError."""
        ident = self.identity
        if "KEITHLEY" not in ident.upper() or "24" not in ident:
            raise InstrumentError(f"{self.resource_name} is not a Keithley 2400-series SMU "
                                  f"(*IDN? answered {ident!r})")
        return ident

    def configure_voltage_source(self, compliance_current_a: float) -> None:
        """Voltage source, current sense, the given compliance, output off at 0 V."""
        self.write("*RST")
        self.write(":SOUR:FUNC VOLT")
        self.write(':SENS:FUNC "CURR"')
        self.compliance_current_a = compliance_current_a
        self.source_voltage_v = 0.0

    def measure_current_a(self) -> float:
        """One current reading in A (:MEAS:CURR? answers V,I[,...]; the current is field 2)."""
        answer = self.query(":MEAS:CURR?")
        fields = answer.split(",")
        try:
            return float(fields[1] if len(fields) > 1 else fields[0])
        except ValueError:
            raise InstrumentError(f"{self.name}: unexpected reading {answer!r}") from None

    def measure_conductance_siemens(self, v_read: float) -> float:
        """Apply `v_read` (V), measure, switch off; returns I / V in S."""
        if v_read == 0:
            raise InstrumentError(f"{self.name}: a conductance needs a non-zero read voltage")
        self.source_voltage_v = v_read
        self.output_enabled = True
        try:
            current = self.measure_current_a()
        finally:
            self.output_enabled = False
            self.source_voltage_v = 0.0
        return current / v_read
