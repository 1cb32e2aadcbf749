"""A small base for SCPI instruments reached through pyvisa, in the style of pymeasure.

An instrument class declares its settings with `control(...)`: the query and the command,
a validator, and the unit in the name. Reading the attribute queries the instrument;
assigning validates first and never sends an out-of-range value.
"""

from __future__ import annotations

from typing import Any, Callable

from imssa_hw.errors import HardwareError


class InstrumentError(HardwareError):
    """The instrument is missing, silent, or answered something unexpected."""


def in_range(low: float, high: float) -> Callable[[Any], float]:
    """Validator: a number within [low, high]."""
    def check(value: Any) -> float:
        value = float(value)
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside [{low:g}, {high:g}]")
        return value
    return check


def one_of(mapping: dict[Any, str]) -> Callable[[Any], str]:
    """Validator: a value among the keys of `mapping`, sent as its SCPI word."""
    def check(value: Any) -> str:
        if value not in mapping:
            raise ValueError(f"{value!r} is not one of {sorted(mapping, key=str)}")
        return mapping[value]
    return check


class control:  # noqa: N801  (used like `property`)
    """A validated instrument setting: reading queries `get_cmd`, assigning sends `set_cmd % value`."""

    def __init__(self, get_cmd: str, set_cmd: str, doc: str, validator: Callable[[Any], Any],
                 parse: Callable[[str], Any] = float):
        self.get_cmd, self.set_cmd, self.__doc__ = get_cmd, set_cmd, doc
        self.validator, self.parse, self.name = validator, parse, "setting"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instrument: "ScpiInstrument | None", owner: type) -> Any:
        if instrument is None:
            return self
        answer = instrument.query(self.get_cmd)
        try:
            return self.parse(answer)
        except ValueError:
            raise InstrumentError(f"{instrument.name}: {self.name}: unexpected answer "
                                  f"{answer!r} to {self.get_cmd!r}") from None

    def __set__(self, instrument: "ScpiInstrument", value: Any) -> None:
        try:
            word = self.validator(value)
        except ValueError as exc:
            raise InstrumentError(f"{instrument.name}: {self.name}: {exc}") from None
        instrument.write(self.set_cmd % word)


class ScpiInstrument:
    """A pyvisa message-based resource with SCPI helpers and typed errors.

    `resource` is a VISA resource name (e.g. `TCPIP::127.0.0.1::5025::SOCKET` or
    `GPIB0::24::INSTR`); `backend` picks the VISA library: "@py" (pyvisa-py, the default) or
    "path/to/file.yaml@sim" (pyvisa-sim). `opened`: an already opened message-based resource
    (anything with pyvisa's `write`, `query`, `close` and `timeout`) to use instead of opening
    `resource`, e.g. to list the exact exchanges in a test without any I/O.
    """

    name = "instrument"

    def __init__(self, resource: str, backend: str = "@py", timeout_s: float = 2.0,
                 opened: Any = None):
        import pyvisa

        self.resource_name = resource
        self._pyvisa_error = pyvisa.Error
        if opened is not None:
            self._visa = opened
            self._visa.timeout = int(timeout_s * 1000)
            return
        try:
            manager = pyvisa.ResourceManager(backend)
            self._visa = manager.open_resource(resource, read_termination="\n",
                                               write_termination="\n")
            self._visa.timeout = int(timeout_s * 1000)
        except Exception as exc:  # pyvisa-py raises bare Exceptions (unknown hosts, ...)
            raise InstrumentError(f"{self.name} at {resource}: cannot open ({exc}); a VISA "
                                  f"resource looks like TCPIP::127.0.0.1::5025::SOCKET or "
                                  f"GPIB0::24::INSTR") from None

    def write(self, command: str) -> None:
        try:
            self._visa.write(command)
        except (self._pyvisa_error, OSError) as exc:
            raise InstrumentError(f"{self.name} at {self.resource_name}: write {command!r} "
                                  f"failed ({exc})") from None

    def query(self, command: str) -> str:
        try:
            return self._visa.query(command).strip()
        except (self._pyvisa_error, OSError) as exc:
            raise InstrumentError(f"{self.name} at {self.resource_name}: no answer to "
                                  f"{command!r} ({exc})") from None

    @property
    def identity(self) -> str:
        """The *IDN? string."""
        return self.query("*IDN?")

    def close(self) -> None:
        self._visa.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
