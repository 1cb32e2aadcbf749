"""A Keithley 2400 source-measure unit, SCPI subset, measuring the device routed to the SMU port.

It sources a voltage and measures current, I = G * V of the routed device's true conductance
(no read chain), limited by the compliance, with the SMU's own small noise. docs/emulator.md lists
the exact command subset. Lines end with \\n; a query answers one line; errors go to the queue
(`:SYST:ERR?`) and a failed query answers nothing, as on the instrument.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

from imssa_hw.emulator.profile import SmuParams

LONG_FORMS = {"SOURCE": "SOUR", "FUNCTION": "FUNC", "VOLTAGE": "VOLT", "LEVEL": "LEV",
              "IMMEDIATE": "IMM", "AMPLITUDE": "AMPL", "SENSE": "SENS", "CURRENT": "CURR",
              "PROTECTION": "PROT", "OUTPUT": "OUTP", "STATE": "STAT", "MEASURE": "MEAS",
              "FORMAT": "FORM", "ELEMENTS": "ELEM", "SYSTEM": "SYST", "ERROR": "ERR"}
OPTIONAL_NODES = {"LEV", "IMM", "AMPL", "STAT", "NEXT", "DC"}
"""Nodes in [brackets] in the 2400 manual: `:SOUR:VOLT:LEV:IMM:AMPL` is `:SOUR:VOLT`."""
ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")
NOT_A_NUMBER = 9.91e37
"""What the 2400 returns for an element it did not measure."""
COMPLIANCE_BIT = 8
V_SOURCE_MAX = 210.0
I_COMPLIANCE_MAX = 1.05
DEFAULT_COMPLIANCE_A = 105e-6


class _ScpiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _header(text: str) -> str:
    """Normalize a command header: upper case, short forms, optional nodes dropped."""
    text = text.upper()
    if text.startswith("*"):
        return text
    nodes = [LONG_FORMS.get(node, node) for node in text.strip(":").split(":")]
    return ":".join(node for node in nodes if node not in OPTIONAL_NODES)


class SmuEmulator:
    """The instrument's state machine: `handle(line)` returns the reply line or None."""

    def __init__(self, params: SmuParams, conductance_siemens: Callable[[], float],
                 rng: np.random.Generator) -> None:
        self.params = params
        self.conductance_siemens = conductance_siemens
        self.rng = rng
        self.started = time.monotonic()
        self.errors: deque[tuple[int, str]] = deque(maxlen=10)
        self._reset()

    def _reset(self) -> None:
        self.output_on = False
        self.source_v = 0.0
        self.compliance_a = DEFAULT_COMPLIANCE_A
        self.elements = ELEMENTS

    def handle(self, line: str) -> str | None:
        """Execute one line (commands separated by ';'); answers of its queries joined by ';'."""
        answers = []
        for command in filter(None, (part.strip() for part in line.split(";"))):
            head, _, argument = command.partition(" ")
            query = head.endswith("?")
            try:
                answer = self._execute(_header(head.rstrip("?")), query, argument.strip())
            except _ScpiError as exc:
                self.errors.append((exc.code, str(exc)))
                continue
            if answer is not None:
                answers.append(answer)
        return ";".join(answers) if answers else None

    def _execute(self, header: str, query: bool, argument: str) -> str | None:
        if (header, query) == ("*IDN", True):
            return self.params.idn
        if (header, query) == ("*RST", False):
            self._reset()
        elif (header, query) == ("*CLS", False):
            self.errors.clear()
        elif (header, query) == ("*OPC", True):
            return "1"
        elif (header, query) == ("SYST:ERR", True):
            code, message = self.errors.popleft() if self.errors else (0, "No error")
            return f'{code},"{message}"'
        elif header in ("SOUR:FUNC", "SOUR:FUNC:MODE"):
            if query:
                return "VOLT"
            if argument.upper() not in ("VOLT", "VOLTAGE"):
                raise _ScpiError(-221, "Settings conflict; only voltage sourcing is emulated")
        elif header == "SENS:FUNC":
            if query:
                return '"CURR:DC"'
            if argument.strip("'\"").upper() not in ("CURR", "CURR:DC", "CURRENT", "CURRENT:DC"):
                raise _ScpiError(-221, "Settings conflict; only current sensing is emulated")
        elif header == "SOUR:VOLT":
            if query:
                return f"{self.source_v:+.6E}"
            self.source_v = self._number(argument, -V_SOURCE_MAX, V_SOURCE_MAX)
        elif header == "SENS:CURR:PROT":
            if query:
                return f"{self.compliance_a:+.6E}"
            self.compliance_a = self._number(argument, 1e-9, I_COMPLIANCE_MAX)
        elif header == "OUTP":
            if query:
                return "1" if self.output_on else "0"
            if argument.upper() not in ("ON", "OFF", "1", "0"):
                raise _ScpiError(-224, "Illegal parameter value")
            self.output_on = argument.upper() in ("ON", "1")
        elif header == "FORM:ELEM":
            if query:
                return ",".join(self.elements)
            chosen = tuple(_header(e.strip()) for e in argument.split(","))
            if not chosen or not set(chosen) <= set(ELEMENTS):
                raise _ScpiError(-224, "Illegal parameter value")
            self.elements = tuple(e for e in ELEMENTS if e in chosen)
        elif (header, query) == ("READ", True):
            if not self.output_on:
                raise _ScpiError(803, "Output disabled")
            return self._measure()
        elif header in ("MEAS:CURR", "MEAS") and query:
            return self._measure()  # :MEAS? turns the output on, measures and turns it off
        else:
            raise _ScpiError(-113, "Undefined header")
        return None

    @staticmethod
    def _number(argument: str, low: float, high: float) -> float:
        try:
            value = float(argument)
        except ValueError:
            raise _ScpiError(-104, "Data type error") from None
        if not low <= value <= high:
            raise _ScpiError(-222, "Data out of range")
        return value

    def _measure(self) -> str:
        """One reading of the selected elements: V, I, R, time, status, as `+1.234560E-05` fields."""
        g = self.conductance_siemens()
        v, status = self.source_v, 0
        current = g * v
        if abs(current) > self.compliance_a:
            current = np.sign(current) * self.compliance_a
            v = current / g  # in compliance the source voltage sags to what the load allows
            status |= COMPLIANCE_BIT
        noise = self.rng.standard_normal(2)
        current = current * (1 + self.params.noise_rel * noise[0]) + self.params.noise_floor_a * noise[1]
        values = {"VOLT": v, "CURR": current, "RES": NOT_A_NUMBER,
                  "TIME": time.monotonic() - self.started, "STAT": float(status)}
        return ",".join(f"{values[e]:+.6E}" for e in self.elements)
