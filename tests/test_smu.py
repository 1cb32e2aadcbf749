"""The SMU drivers: exact exchanges of each family (Keithley 2400, 2450, 2600) over TCP or
with nothing opened, validation, pyvisa-sim, and the family chosen from *IDN?."""

from __future__ import annotations

import pathlib
import socket
import threading

import pytest

from imssa_hw.drivers.instrument import InstrumentError
from imssa_hw.drivers.keithley2400 import Keithley2400
from imssa_hw.drivers.keithley2450 import Keithley2450
from imssa_hw.drivers.keithley2600 import Keithley2600
from imssa_hw.drivers.smu import model_of, open_smu

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
                 ("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2410,04096331,C33")]
    ident = run_script(exchanges, lambda smu: (smu.configure_voltage_source(1e-4),
                                               smu.check_identity())[1])
    assert "2410" in ident


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


@pytest.mark.parametrize("identity,model", [
    ("KEITHLEY INSTRUMENTS INC.,MODEL 2400,EMU0001,C32 IMSSA-EMULATOR", "2400"),
    ("KEITHLEY INSTRUMENTS INC.,MODEL 2450,04096331,1.7.3c", "2450"),
    ("Keithley Instruments Inc., Model 2602B, 4123456, 3.2.2", "2602"),
    ("Keithley Instruments SMU 2636A - 1.4.2", ""),
    ("Agilent Technologies,B2902A,MY123,1.0", ""),
])
def test_the_model_from_idn(identity, model):
    assert model_of(identity) == model


@pytest.mark.parametrize("identity,family", [
    ("KEITHLEY INSTRUMENTS INC.,MODEL 2400,EMU0001,C32 IMSSA-EMULATOR", Keithley2400),
    ("KEITHLEY INSTRUMENTS INC.,MODEL 2470,04096331,1.7.3c", Keithley2450),
    ("Keithley Instruments Inc., Model 2636B, 4123456, 3.2.2", Keithley2600),
])
def test_open_smu_picks_the_family_from_idn(identity, family):
    with open_smu("GPIB0::24::INSTR", opened=ExpectedExchanges([("*IDN?", identity)])) as smu:
        assert type(smu) is family


def test_open_smu_names_what_it_cannot_drive():
    visa = ExpectedExchanges([("*IDN?", "Agilent Technologies,B2902A,MY123,1.0")])
    with pytest.raises(InstrumentError, match="no driver for 'Agilent.*supported: Keithley2400 "
                                              r"\(2400, "):
        open_smu("GPIB0::23::INSTR", opened=visa)


def test_a_2450_is_not_driven_as_a_2400():
    """The 2400's :SENS:CURR:PROT is refused by a 2450 in its own command set."""
    visa = ExpectedExchanges([("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2450,1,1.7.3c")])
    with pytest.raises(InstrumentError, match="is not a Keithley2400"):
        Keithley2400("USB0::0x05E6::0x2450::INSTR", opened=visa).check_identity()


def test_keithley2450_exchanges():
    visa = ExpectedExchanges([
        ("*RST", None), (":SOUR:FUNC VOLT", None), (':SENS:FUNC "CURR"', None),
        (":SOUR:VOLT:ILIM 1.000000e-03", None), (":SOUR:VOLT:LEV 0.000000e+00", None),
        (":SOUR:VOLT:LEV 2.000000e-01", None), (":OUTP ON", None),
        (":MEAS:CURR?", "+1.000000E-05"),
        (":OUTP OFF", None), (":SOUR:VOLT:LEV 0.000000e+00", None),
        (":SOUR:VOLT:ILIM?", "+1.000000E-03"),
    ])
    with Keithley2450("USB0::0x05E6::0x2450::INSTR", opened=visa) as smu:
        smu.configure_voltage_source(1e-3)
        assert smu.measure_conductance_siemens(0.2) == pytest.approx(5e-5)
        assert smu.compliance_current_a == pytest.approx(1e-3)


def test_keithley2600_exchanges():
    visa = ExpectedExchanges([
        ("smua.reset()", None), ("smua.source.func=smua.OUTPUT_DCVOLTS", None),
        ("smua.source.limiti=1.000000e-03", None), ("smua.source.levelv=0.000000e+00", None),
        ("smua.source.levelv=2.000000e-01", None), ("smua.source.output=smua.OUTPUT_ON", None),
        ("print(smua.measure.i())", "1.00000e-05"),
        ("smua.source.output=smua.OUTPUT_OFF", None), ("smua.source.levelv=0.000000e+00", None),
        ("print(smua.source.output)", "0.00000e+00"),
    ])
    with Keithley2600("TCPIP::10.0.0.5::INSTR", opened=visa) as smu:
        smu.configure_voltage_source(1e-3)
        assert smu.measure_conductance_siemens(0.2) == pytest.approx(5e-5)
        assert smu.output_enabled is False
    with pytest.raises(InstrumentError, match="outside"):
        Keithley2600("TCPIP::10.0.0.5::INSTR", opened=ExpectedExchanges([])).source_voltage_v = 300
