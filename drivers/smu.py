"""Source-measure units: one class per instrument family, chosen from *IDN? (`open_smu`).

Calibration needs one thing of an SMU: source a small voltage on one device routed to the
board's SMU port and measure its current (`measure_conductance_siemens`). Each family says it
in its own commands; the classes declare them (pymeasure's style, `instrument.control`), and
their exchanges were checked against pymeasure's drivers of the same families (docs/boards.md,
SMUs):

| family | models | commands |
| --- | --- | --- |
| `Keithley2400` | 2400, 2401, 2410, 2420, 2425, 2430, 2440 (and a 2450 in "SCPI 2400" mode) | SCPI of the 2400: `:SENS:CURR:PROT`, `:MEAS:CURR?` |
| `Keithley2450` | 2450, 2460, 2461, 2470 | their own SCPI: `:SOUR:VOLT:ILIM`, `:MEAS:CURR?` |
| `Keithley2600` | 2601-2636 (A and B) | TSP on channel A: `smua.source.limiti`, `print(smua.measure.i())` |

The emulated board's SMU (`imssa-hw emulate --smu-port`) is a 2400 and goes the same way.
"""

from __future__ import annotations

from typing import Any

from imssa_hw.drivers.instrument import InstrumentError, ScpiInstrument


class SourceMeter(ScpiInstrument):
    """An SMU in voltage-source, current-measure mode; a family defines the settings
    `source_voltage_v`, `compliance_current_a`, `output_enabled` and the two methods below."""

    name = "SMU"
    models: tuple[str, ...] = ()
    """The model numbers (as *IDN? names them, suffix letters aside) this class drives."""

    def configure_voltage_source(self, compliance_current_a: float) -> None:
        """Reset; voltage source, current sense, the given compliance, output off at 0 V."""
        raise NotImplementedError

    def measure_current_a(self) -> float:
        """One current reading in A, the output on."""
        raise NotImplementedError

    def check_identity(self) -> str:
        """*IDN? if it names a model of this family, else InstrumentError."""
        ident = self.identity
        if model_of(ident) not in self.models:
            raise InstrumentError(f"{self.resource_name} is not a {type(self).__name__} "
                                  f"(*IDN? answered {ident!r})")
        return ident

    def measure_conductance_siemens(self, v_read_v: float) -> float:
        """Apply `v_read_v` (V), measure, switch off; returns I / V in S."""
        if v_read_v == 0:
            raise InstrumentError(f"{self.name}: a conductance needs a non-zero read voltage")
        self.source_voltage_v = v_read_v
        self.output_enabled = True
        try:
            current = self.measure_current_a()
        finally:
            self.output_enabled = False
            self.source_voltage_v = 0.0
        return current / v_read_v

    def _reading(self, answer: str, field: int = 0) -> float:
        try:
            return float(answer.split(",")[field])
        except (ValueError, IndexError):
            raise InstrumentError(f"{self.name}: unexpected reading {answer!r}") from None


def model_of(identity: str) -> str:
    """The model number in an *IDN? answer ("KEITHLEY INSTRUMENTS INC.,MODEL 2450,..." ->
    "2450", "Keithley Instruments Inc., Model 2602B, ..." -> "2602"); "" if none."""
    fields = [f.strip() for f in identity.split(",")]
    if len(fields) < 2 or "KEITHLEY" not in fields[0].upper():
        return ""
    word = fields[1].upper().removeprefix("MODEL").strip()
    return word.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def families() -> tuple[type[SourceMeter], ...]:
    from imssa_hw.drivers.keithley2400 import Keithley2400
    from imssa_hw.drivers.keithley2450 import Keithley2450
    from imssa_hw.drivers.keithley2600 import Keithley2600

    return Keithley2400, Keithley2450, Keithley2600


def open_smu(resource: str, backend: str = "@py", timeout_s: float = 2.0,
             opened: Any = None) -> SourceMeter:
    """The SMU at `resource`, its driver chosen from *IDN?; InstrumentError naming what it
    answered when no family here drives it. `opened`: an already opened resource (tests)."""
    probe = SourceMeter(resource, backend, timeout_s, opened)  # "SMU" in its errors
    try:
        ident = probe.identity
        for family in families():
            if model_of(ident) in family.models:
                return family(resource, timeout_s=timeout_s, opened=probe._visa)
    except BaseException:
        probe.close()
        raise
    probe.close()
    supported = ", ".join(f"{f.__name__} ({', '.join(f.models)})" for f in families())
    raise InstrumentError(f"SMU at {resource}: no driver for {ident!r}; supported: {supported}")
