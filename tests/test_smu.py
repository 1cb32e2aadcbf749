"""The Keithley 2400 driver: exact SCPI exchanges over TCP, validation, and pyvisa-sim."""

from __future__ import annotations

import pathlib
import socket
import threading

import pytest

from imssa_hw.drivers.instrument import InstrumentError
from imssa_hw.drivers.keithley2400 import Keithley2400

SIM = str(pathlib.Path(__file__).parent / "fixtures" / "keithley2400.yaml") + "@sim"


class ScriptedScpiServer:
    """A TCP peer on 127.0.0.1 that expects exact lines and answers from a script."""

    def __init__(self, exchanges: list[tuple[str, str | None]]):
        self.exchanges = exchanges
        self.received: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rwb") as stream:
            for _expected, reply in self.exchanges:
                line = stream.readline()
                if not line:
                    return
                self.received.append(line.decode().rstrip("\n"))
                if reply is not None:
                    stream.write(reply.encode() + b"\n")
                    stream.flush()

    def close(self) -> None:
        self.thread.join(timeout=2)
        self.sock.close()


def run_script(exchanges, action):
    server = ScriptedScpiServer(exchanges)
    smu = Keithley2400(f"TCPIP::127.0.0.1::{server.port}::SOCKET", timeout_s=2)
    try:
        result = action(smu)
    finally:
        smu.close()
        server.close()
    assert server.received == [line for line, _ in exchanges]
    return result


def test_measure_conductance_exchanges():
    exchanges = [
        (":SOUR:VOLT:LEV 2.000000e-01", None),
        (":OUTP ON", None),
        (":MEAS:CURR?", "+2.000000E-01,+5.000000E-06,+9.91E+37,+1.0E+00,+1.9E+04"),
        (":OUTP OFF", None),
        (":SOUR:VOLT:LEV 0.000000e+00", None),
    ]
    g = run_script(exchanges, lambda smu: smu.measure_conductance_siemens(0.2))
    assert g == pytest.approx(25e-6)


def test_configure_exchanges():
    exchanges = [("*RST", None), (":SOUR:FUNC VOLT", None), (':SENS:FUNC "CURR"', None),
                 (":SENS:CURR:PROT 1.000000e-04", None), (":SOUR:VOLT:LEV 0.000000e+00", None),
                 ("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2450,04096331,1.7.3c")]
    ident = run_script(exchanges, lambda smu: (smu.configure_voltage_source(1e-4),
                                               smu.check_identity())[1])
    assert "2450" in ident


def test_out_of_range_values_are_never_sent():
    exchanges = [("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1,C30")]

    def action(smu):
        with pytest.raises(InstrumentError, match="source_voltage_v.*outside"):
            smu.source_voltage_v = 500
        with pytest.raises(InstrumentError, match="compliance_current_a"):
            smu.compliance_current_a = 5.0
        smu.check_identity()
    run_script(exchanges, action)


def test_pyvisa_sim_dialogue():
    with Keithley2400("GPIB0::24::INSTR", backend=SIM) as smu:
        assert "MODEL 2400" in smu.check_identity()
        smu.configure_voltage_source(1e-4)
        assert smu.compliance_current_a == pytest.approx(1e-4)
        smu.source_voltage_v = 0.2
        assert smu.source_voltage_v == pytest.approx(0.2)
        smu.output_enabled = True
        assert smu.output_enabled is True
        assert smu.measure_current_a() == pytest.approx(1e-5)


def test_wrong_instrument_is_named():
    with Keithley2400("GPIB0::22::INSTR", backend=SIM) as other:
        with pytest.raises(InstrumentError, match="not a Keithley"):
            other.check_identity()


def test_silent_instrument_is_a_typed_error():
    sock = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = sock.getsockname()[1]
    try:
        with Keithley2400(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=0.3) as smu:
            with pytest.raises(InstrumentError, match="no answer"):
                smu.check_identity()
    finally:
        sock.close()


def test_nothing_listening_is_a_typed_error():
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    # pyvisa-py connects lazily: the refusal surfaces on the first exchange
    with pytest.raises(InstrumentError, match=f"SMU at TCPIP::127.0.0.1::{port}::SOCKET"):
        Keithley2400(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=0.3).check_identity()


class ExpectedExchanges:
    """Stands in for an opened pyvisa message-based resource (pymeasure's expected_protocol):
    every write and query must be the next listed exchange; queries get its answer."""

    def __init__(self, exchanges: list[tuple[str, str | None]]):
        self.exchanges = list(exchanges)
        self.timeout = 0

    def _next(self, message: str) -> str | None:
        assert self.exchanges, f"unexpected {message!r}: no exchange left"
        expected, answer = self.exchanges.pop(0)
        assert message == expected
        return answer

    def write(self, message: str) -> int:
        assert self._next(message) is None, f"{message!r} expects an answer: use query"
        return len(message)

    def query(self, message: str) -> str:
        answer = self._next(message)
        assert answer is not None, f"{message!r} has no answer: use write"
        return answer

    def close(self) -> None:
        assert not self.exchanges, f"exchanges left: {self.exchanges}"


def test_the_stand_in_has_pyvisa_signatures():
    import inspect

    from pyvisa.resources import MessageBasedResource

    for name in ("write", "query", "close"):
        real = list(inspect.signature(getattr(MessageBasedResource, name)).parameters)
        ours = list(inspect.signature(getattr(ExpectedExchanges, name)).parameters)
        assert ours == real[:len(ours)], name  # the same leading parameters, by name
    assert hasattr(MessageBasedResource, "timeout")  # the attribute the driver sets


def test_measure_conductance_exchanges_in_process():
    """Exactly these lines, in this order, with nothing opened."""
    visa = ExpectedExchanges([
        ("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1,C32"),
        ("*RST", None), (":SOUR:FUNC VOLT", None), (':SENS:FUNC "CURR"', None),
        (":SENS:CURR:PROT 1.000000e-03", None), (":SOUR:VOLT:LEV 0.000000e+00", None),
        (":SOUR:VOLT:LEV 2.000000e-01", None), (":OUTP ON", None),
        (":MEAS:CURR?", "+2.000000E-01,+1.000000E-05,+9.9E37"),
        (":OUTP OFF", None), (":SOUR:VOLT:LEV 0.000000e+00", None),
    ])
    with Keithley2400("GPIB0::24::INSTR", opened=visa) as smu:
        smu.check_identity()
        smu.configure_voltage_source(1e-3)
        assert smu.measure_conductance_siemens(0.2) == pytest.approx(5e-5)
    with pytest.raises(InstrumentError, match="outside"):
        Keithley2400("GPIB0::24::INSTR", opened=ExpectedExchanges([])).source_voltage_v = 300
