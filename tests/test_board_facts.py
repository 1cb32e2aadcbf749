"""The board's facts stated once: one table of ranges that every loader checks against (the
compiler's profiles, the emulator's, a board's identify reply, calibration and defect files),
tied to the wire format it comes from; `BoardSpec.misfits` on everything a deployment depends
on; the ArC TWO backend's facts taken from its profile, and the instrument facts it keeps tied
to it."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import tomllib
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from imssa_hw.board import BoardSpec, ConductanceWindow, ReadChainSpec
from imssa_hw.board.converters import adc_codes, dac
from imssa_hw.board.params import PULSE_STEPS_PER_V, RANGES, WINDOW_SLACK, on_pulse_steps
from imssa_hw.board.profile import load_board_profile, profile_from_dict
from imssa_hw.calibration.data import Calibration
from imssa_hw.compiler.defects import DefectMap, defects_from_dict
from imssa_hw.drivers import arc2
from imssa_hw.drivers.arc2_mapping import DEFAULT_MAPPING, load_mapping
from imssa_hw.drivers.board import Board
from imssa_hw.drivers.errors import PayloadError, ProtocolError, VoltageLimitError
from imssa_hw.drivers.framing import CRC_BYTES, HEADER, MAX_FRAME_BYTES
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import (WIRE_ADC_BITS, OutOfRange, PulseBatch,
                                       pack_array, pack_programs, unpack_identify,
                                       unpack_programs)
from imssa_hw.emulator import profile as emulator_profile
from imssa_hw.emulator.profile import board_info
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.errors import BadInput
from imssa_hw.programming.journal import volt_list

SHAPE = re.compile(r"(\S+) = (\S+) is impossible \(allowed (\S+) \.\. (\S+)\)")
"""The one shape of an out-of-range value, whichever loader met it."""


def compiler_error(table: str, key: str, value) -> str | None:
    """What the compiler says of board-default with `[table] key = value` (None: accepted)."""
    data = load_board_profile("board-default").to_dict()
    data[table][key] = value
    try:
        profile_from_dict(data)
    except BadInput as exc:
        return str(exc)
    return None


def emulator_error(key: str, value) -> str | None:
    """What the emulator says of emulator-default with `key = value` (None: accepted)."""
    try:
        load_emulator_profile(None, {key: value})
    except BadInput as exc:
        return str(exc)
    return None


def reply_error(change) -> str | None:
    """What the driver says of emulator-default's identify reply changed by `change`."""
    info = asdict(board_info(load_emulator_profile(None)).reply())
    change(info)
    try:
        unpack_identify(json.dumps(info).encode())
    except PayloadError as exc:
        return str(exc)
    return None


def set_limit(name: str, value: float):
    return lambda info: info["limits"].update({name: value})


def set_key(name: str, value):
    return lambda info: info.update({name: value})


# quantity, value (SI), the profiles' table, key and file units per SI unit (the compiler's and
# the emulator's profiles describe a board with the same tables), and the change to an identify
# reply
CASES = [
    ("arrays", 256, "board", "arrays", 1, set_key("arrays", 256)),
    ("arrays", 257, "board", "arrays", 1, set_key("arrays", 257)),
    ("arrays", 0, "board", "arrays", 1, set_key("arrays", 0)),
    ("rows", 65536, "board", "rows", 1, set_key("rows", 65536)),
    ("cols", 32769, "board", "cols", 1, set_key("cols", 32769)),
    ("dac_bits", 1, "read", "dac_bits", 1, set_key("dac_bits", 1)),
    ("dac_bits", 24, "read", "dac_bits", 1, set_key("dac_bits", 24)),
    ("dac_bits", 25, "read", "dac_bits", 1, set_key("dac_bits", 25)),
    ("adc_bits", 1, "read", "adc_bits", 1, set_key("adc_bits", 1)),
    ("adc_bits", 25, "read", "adc_bits", 1, set_key("adc_bits", 25)),
    ("v_read_max", 5e-4, "read", "v_read_max", 1, set_limit("v_read_max", 5e-4)),
    ("v_set_max", 32.767, "limits", "v_set_max", 1, set_limit("v_set_max", 32.767)),
    ("v_set_max", 32.768, "limits", "v_set_max", 1, set_limit("v_set_max", 32.768)),
    ("v_gate_max", 40.0, "limits", "v_gate_max", 1, set_limit("v_gate_max", 40.0)),
    ("g_max_siemens", 0.1, "conductance", "g_max_us", 1e6,
     set_key("g_window_siemens", [1e-6, 0.1])),
    ("g_max_siemens", 0.11, "conductance", "g_max_us", 1e6,
     set_key("g_window_siemens", [1e-6, 0.11])),
]


@pytest.mark.parametrize("quantity,value,table,key,per_si,reply", CASES,
                         ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_every_loader_accepts_and_refuses_the_same_values(quantity, value, table, key, per_si,
                                                          reply):
    errors = {"compiler": compiler_error(table, key, value * per_si),
              "emulator": emulator_error(f"{table}.{key}", value * per_si),
              "reply": reply_error(reply)}
    bounds = RANGES[quantity]
    if bounds.low <= value <= bounds.high:
        assert errors == {"compiler": None, "emulator": None, "reply": None}
        return
    for loader, error in errors.items():
        assert error is not None and "\n" not in error, loader
        found = SHAPE.search(error)
        assert found, error
        scale = 1.0 if loader == "reply" else per_si
        assert found[1] == (quantity if loader == "reply" else key)
        assert float(found[2]) == pytest.approx(value * scale)
        assert (float(found[3]), float(found[4])) == pytest.approx(
            (bounds.low * scale, bounds.high * scale))


def test_the_emulator_describes_its_board_as_the_compiler_does():
    """The emulator's board tables are a board profile's: the same keys, read by the same
    tables into the same `BoardSpec`, which is what the emulated board announces."""
    data = tomllib.loads((resources.files("imssa_hw") / "profiles"
                          / "emulator-default.toml").read_text())
    compiler = load_board_profile("board-default").to_dict()
    for table in ("board", "conductance", "read", "limits"):
        assert set(data[table]) <= set(compiler[table]), table
    for name in ("emulator-default", "emulator-harsh", "emulator-multi"):
        profile = load_emulator_profile(name)
        assert board_info(profile).spec == profile.spec, name
    assert emulator_error("read_chain.adc_bits", 9) == "unknown profile key 'read_chain.adc_bits'"


def test_the_tia_ranges_and_pulse_widths_have_one_range_everywhere():
    assert compiler_error("read", "tia_ranges_ua", [5.0, 1e6]) is None
    assert "tia_ranges_ua = 1100000.0 is impossible (allowed 0.001 .. 1000000)" in compiler_error(
        "read", "tia_ranges_ua", [5.0, 1.1e6])
    ranges = [5.0, 40.0, 640.0]
    assert emulator_error("read.tia_ranges_ua", ranges + [1e6]) is None
    assert "tia_ranges_ua = 1100000.0 is impossible (allowed 0.001 .. 1000000)" in emulator_error(
        "read.tia_ranges_ua", ranges + [1.1e6])
    assert "pulse_width_ns = 0.5 is impossible (allowed 1 .. 1000000000)" in compiler_error(
        "limits", "pulse_width_ns", 0.5)
    assert "pulse_width_min_s = 5e-10 is impossible" in emulator_error(
        "firmware.pulse_width_min_s", 5e-10)
    assert "pulse_width_min_s (0.01 s) must not exceed" in emulator_error(
        "firmware.pulse_width_min_s", 1e-2)


def test_a_board_on_the_serial_protocol_has_at_most_15_adc_bits():
    """Its codes travel as int16, and so does a loop output, the difference of two columns'
    codes; the ArC TWO (off the wire) has 18, which the compiler and BoardInfo take."""
    assert compiler_error("read", "adc_bits", 18) is None
    assert reply_error(set_key("adc_bits", 18)) is None
    assert emulator_error("read.adc_bits", 15) is None
    error = emulator_error("read.adc_bits", 16)
    assert "adc_bits = 16 is impossible (allowed 2 .. 15)" in error and "int16" in error
    for bits, fits in ((WIRE_ADC_BITS.high, True), (WIRE_ADC_BITS.high + 1, False)):
        top = 2 ** (bits - 1)
        widest_output = (top - 1) - (-top)  # the difference of two columns' codes
        assert (widest_output <= np.iinfo(np.int16).max) == fits


def test_the_converters_round_saturate_and_step_as_stated():
    """A signed ADC of b bits reads -2**(b-1) .. 2**(b-1)-1, rounding to the nearest code (ties
    to even) and saturating at both ends; a signed row DAC of b bits has 2**(b-1)-1 steps to
    v_read_max and clips there; `ReadChainSpec`'s steps are these."""
    scaled = np.array([-1e9, -256.6, -256.5, -0.5, 1.5, 2.5, 254.5, 255.4, 255.5, 1e9])
    assert adc_codes(scaled, 9).tolist() == [-256, -256, -256, 0, 2, 2, 254, 255, 255, 255]
    spec = ReadChainSpec(0.2, 8, 9, (40e-6, 640e-6))
    assert spec.adc_full_scale_codes == 256 and spec.adc_lsb_a(640e-6) == 2.5e-6
    assert spec.dac_lsb_v == 0.2 / 127
    v = np.array([-1e3, -127.0, 0.4, 10.6, 126.6, 1e3]) * spec.dac_lsb_v
    assert np.allclose(dac(v, 0.2, 8) / spec.dac_lsb_v, [-127, -127, 0, 11, 127, 127])
    # a read at either end of the scale may stand for a larger current: saturated
    read_a = adc_codes(np.array([-1e9, -255.0, 0.0, 254.0, 1e9, np.nan]), 9) * 2.5e-6
    assert spec.adc_saturated(read_a, 640e-6).tolist() == [True, False, False, False, True, False]


def test_the_driver_refuses_a_board_whose_codes_do_not_fit_the_wire(monkeypatch):
    monkeypatch.setattr(emulator_profile, "WIRE_ADC_BITS", replace(WIRE_ADC_BITS, high=16))
    with pytest.raises(ProtocolError, match=r"adc_bits = 16 is impossible \(allowed 2 \.\. 15\)"):
        Board.open("emu://?arrays=1&rows=4&cols=4&set=read.adc_bits=16")
    with Board.open("emu://?arrays=1&rows=4&cols=4&set=read.adc_bits=15") as board:
        assert board.info.adc_bits == 15


def test_the_geometry_of_calibration_and_defect_files_has_the_same_range():
    def calibration(arrays: int) -> dict:
        return Calibration("B", arrays, 1, 1, np.ones((arrays, 1)), np.zeros((arrays, 1)), None,
                           None, {}, 0.2, 40e-6).to_dict()
    assert Calibration.from_dict(calibration(256)).arrays == 256
    with pytest.raises(BadInput, match=r"calib: arrays = 257 is impossible \(allowed 1 \.\. 256\)"):
        Calibration.from_dict(calibration(257), "calib")
    defects = DefectMap(1, 2048, 2048, ()).to_dict()
    assert defects_from_dict(defects).rows == 2048
    defects["cols"] = 2049
    with pytest.raises(BadInput, match=r"rows x cols = 4196352 is impossible"):
        defects_from_dict(defects)
    with pytest.raises(BadInput, match="arrays must be an integer, got 'two'"):
        defects_from_dict({**defects, "arrays": "two"})


@pytest.mark.parametrize("noise", [0.0, 1.0, -0.01, 1.01])
def test_read_noise_has_one_range_everywhere(noise):
    """A board profile's [errors], an emulator's read chain, a calibration file and the
    programming settings take the same relative read noise: `RANGES["read_noise_rel"]`."""
    from imssa_hw.programming.settings import ProgramSettings

    def refused(make) -> bool:
        try:
            make()
        except BadInput:
            return True
        return False
    data = load_board_profile("board-default").to_dict()
    data.setdefault("errors", {})["read_noise_rel"] = noise
    calibration = {**Calibration("B", 1, 1, 1, np.ones((1, 1)), np.zeros((1, 1)), None, None,
                                 {}, 0.2, 40e-6).to_dict(), "read_noise_rel": noise}
    loaders = [lambda: profile_from_dict(data),
               lambda: load_emulator_profile(None, {"read_chain.read_noise_rel": noise}),
               lambda: Calibration.from_dict(calibration),
               lambda: ProgramSettings(read_noise_rel=noise)]
    assert [refused(make) for make in loaders] == [noise not in RANGES["read_noise_rel"]] * 4


@pytest.mark.parametrize("tolerance_us", [2000.0, 9e4, 1.01e5])
def test_programming_takes_every_tolerance_a_board_profile_may_state(tolerance_us):
    """A deployment programs at the tolerance its profile states (`program_deployment` parses
    it): the compiler's tables and `parse_tolerance` have one range (it was 1 mS for
    programming, 0.1 S for profiles)."""
    from imssa_hw.programming.settings import parse_tolerance

    data = load_board_profile("board-default").to_dict()
    data["conductance"].update(g_max_us=1e5, tolerance_us=tolerance_us)
    accepted = []
    for parse in (lambda: profile_from_dict(data), lambda: parse_tolerance(tolerance_us * 1e-6),
                  lambda: parse_tolerance(f"{tolerance_us}uS")):
        try:
            parse()
        except BadInput:
            accepted.append(False)
        else:
            accepted.append(True)
    assert accepted == [tolerance_us * 1e-6 in RANGES["tolerance_siemens"]] * 3


def test_the_geometry_ranges_are_the_wire_formats():
    """Array indices are u8, a program's rows a u16 count, output columns int16, and a
    whole-array pulse request of the most devices fits a frame, byte-stuffed."""
    assert pack_array(RANGES["arrays"].high - 1) == b"\xff"
    with pytest.raises(struct.error):
        pack_array(RANGES["arrays"].high)

    def program(rows: int, col: int) -> LoopProgram:
        return LoopProgram(0, np.full(rows, -1), np.zeros(rows), np.full(rows, -1),
                           np.zeros(rows), [col], [-1])
    rows, cols = int(RANGES["rows"].high), int(RANGES["cols"].high)
    (back,) = unpack_programs(pack_programs([program(rows, cols - 1)]))
    assert back.rows == rows and back.out_plus.tolist() == [cols - 1]
    with pytest.raises(struct.error):
        pack_programs([program(rows + 1, 0)])
    with pytest.raises(OutOfRange):  # column 32768 wraps to -32768 in int16
        unpack_programs(pack_programs([program(1, cols)]))

    def stuffed_worst_case(devices: int) -> int:
        return 2 * (HEADER.size + PulseBatch.size(devices) + CRC_BYTES) + 2

    most = int(RANGES["rows x cols"].high)
    assert stuffed_worst_case(most) <= MAX_FRAME_BYTES < stuffed_worst_case(2 * most)


def test_voltage_limits_end_where_int16_millivolts_do():
    top = RANGES["v_set_max"].high
    ok = PulseBatch(0, np.full((1, 1), top), np.zeros((1, 1)), np.ones((1, 1), bool))
    assert len(ok.pack()) == PulseBatch.size(1)
    over = replace(ok, v=np.full((1, 1), top + 1e-3))
    with pytest.raises(VoltageLimitError, match="32.767 V"):
        over.pack()
    assert RANGES["v_set_max"].low == 1e-3  # one millivolt, the wire's step
    # the wire, the journal (and the ArC TWO backend) put pulse voltages on one grid
    volts = np.random.default_rng(0).uniform(0, 5, (1, 1000))
    wire = PulseBatch(0, volts, np.zeros_like(volts), np.ones_like(volts, bool)).pack()
    millivolts = np.frombuffer(wire[1:1 + 2 * volts.size], "<i2")
    assert np.array_equal(millivolts / PULSE_STEPS_PER_V, on_pulse_steps(volts).ravel())
    assert volt_list(volts) == on_pulse_steps(volts).tolist() != volts.tolist()


def test_docs_state_the_ranges_of_the_table():
    """docs/boards.md's table of what a board may be is `RANGES`, entry for entry."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "boards.md").read_text()
    section = text.split("### What a board may be")[1].split("\n### ")[0]
    prefixes = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0}

    def si(text: str) -> float:
        number, prefix = re.fullmatch(r"([\d.]+)(?: ([num]?)[AVsS])?", text.strip()).groups()
        return float(number) * prefixes[prefix or ""]
    stated = {}
    for names, span in re.findall(r"^\| (`[^|]+) \| ([^|]+) \| ", section, re.M):
        low, high = (si(end) for end in span.split(" .. "))
        for name in re.findall(r"`([^`]+)`", names.split("(")[0]):
            stated[name] = pytest.approx((low, high))
    assert stated == {name: (b.low, b.high) for name, b in RANGES.items()}


def test_emulate_refuses_a_shape_out_of_range_in_one_line():
    for args, message in ((["--set", "board.arrays=300"],
                           "Error: bad profile emulator-default [board]: arrays = 300 is impossible "
                           "(allowed 1 .. 256)"),
                          (["--arrays", "300"], "300 is not in the range 1<=x<=256")):
        done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "emulate", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("Error: ") and message in line


# -- misfits --------------------------------------------------------------------------------

DEFAULT = load_board_profile("board-default").spec


def variant(spec: BoardSpec = DEFAULT, **changes) -> BoardSpec:
    """`spec` with parts replaced (`window=...`) or their fields (`read_chain__adc_bits=8`)."""
    parts: dict = {}
    for key, value in changes.items():
        part, _, name = key.partition("__")
        parts[part] = replace(parts.get(part, getattr(spec, part)), **{name: value}) if name \
            else value
    return replace(spec, **parts)


def test_the_shipped_boards_fit_their_profiles():
    assert DEFAULT.misfits(board_info(load_emulator_profile(None)).spec) == []
    assert DEFAULT.misfits(board_info(load_emulator_profile("emulator-harsh")).spec) == []
    multi = load_board_profile("board-multi").spec
    assert multi.misfits(board_info(load_emulator_profile("emulator-multi")).spec) == []
    arc2_board = arc2.Arc2Board(object()).info.spec
    assert load_board_profile("board-arc2").spec.misfits(arc2_board) == []
    # its 18-bit ADC holds board-default's ranges more finely on its own three
    assert variant(geometry=arc2_board.geometry).misfits(arc2_board) == []
    # a passive crossbar: a 1T1R deployment programs it with the gates left out
    passive = arc2.Arc2Board(object(), "passive").info.spec
    assert load_board_profile("board-arc2").spec.misfits(passive) == []
    passive_deployment = variant(geometry=replace(arc2_board.geometry, cell="passive"))
    assert passive_deployment.misfits(arc2_board) == [
        "the deployment is for passive cells, the board's are 1T1R"]


def test_a_deployment_needs_only_the_tia_ranges_its_layers_use():
    """board-large on its documented emulator (emulator-default as 16 x 256x256): the emulator's
    ranges stop at 2560 uA, the profile lists two more, which a layer uses only when its states
    are that large."""
    large = load_board_profile("board-large").spec
    emulated = board_info(load_emulator_profile(None, {"board.arrays": 16, "board.rows": 256,
                                                       "board.cols": 256})).spec
    assert large.misfits(emulated, ranges_a=[160e-6, 2560e-6]) == []
    assert large.misfits(emulated) == ["the board has no TIA range holding 5120, 10240 uA with an "
                                       "ADC step as fine as the deployment's"]


@pytest.mark.parametrize("changes", [
    {"read_chain__adc_bits": 12},                                 # finer codes
    {"read_chain__dac_bits": 10},                                 # finer rows
    {"read_chain__dac_bits": 9, "read_chain__v_read_max": 0.3},  # wider rows, a finer step
    {"read_chain__adc_ranges_a": (1e-6, *DEFAULT.read_chain.adc_ranges_a)},  # one range more
    {"read_chain__adc_bits": 12,  # 3 bits more on ranges 4 times as wide: finer steps still
     "read_chain__adc_ranges_a": tuple(4 * r for r in DEFAULT.read_chain.adc_ranges_a)},
    {"limits__v_set_max": 5.0, "limits__v_reset_max": 3.0, "limits__v_gate_max": 6.0},
    {"window__g_min_siemens": 1e-6 * (1 + WINDOW_SLACK / 2)},  # 1 uS just below its floor
    {"window__g_max_siemens": 155e-6 / (1 + WINDOW_SLACK / 2)},  # 155 uS just past its top
])
def test_a_finer_or_more_permissive_board_fits(changes):
    assert DEFAULT.misfits(variant(**changes)) == []


@pytest.mark.parametrize("changes,phrase", [
    ({"geometry__arrays": 4}, "the deployment is for 3 arrays of 64x64, the board has 4 arrays"),
    ({"read_chain__adc_bits": 8}, "the board's ADCs have 8 bits, the deployment needs 9"),
    ({"read_chain__dac_bits": 7}, "the board's row DACs step 3.17 mV, the deployment needs "
                                  "1.57 mV or finer"),
    ({"read_chain__v_read_max": 0.4}, "the board's row DACs step 3.15 mV"),
    ({"read_chain__v_read_max": 0.1, "read_chain__dac_bits": 9},
     "the board's row voltages stop at 0.1 V, the deployment's reach 0.2 V"),
    ({"read_chain__adc_ranges_a": DEFAULT.read_chain.adc_ranges_a[1:]},  # 5 uA: on 10 uA
     "the board has no TIA range holding 5 uA with an ADC step as fine as the deployment's"),
    ({"read_chain__adc_ranges_a": DEFAULT.read_chain.adc_ranges_a[:-1]},  # clipped
     "the board has no TIA range holding 2560 uA"),
    ({"limits__v_set_max": 3.0}, "the board's SET limit is 3 V, the deployment programs up to 3.5 V"),
    ({"limits__v_reset_max": 1.0}, "the board's RESET limit is 1 V"),
    ({"limits__v_gate_max": 5.0}, "the board's gate limit is 5 V"),
    ({"window__g_max_siemens": 140e-6}, "the deployment's window 1-155 uS reaches beyond the "
                                        "board's 1-140 uS"),
    ({"window__g_min_siemens": 1.2e-6}, "reaches beyond the board's 1.2-150 uS"),
])
def test_a_coarser_or_tighter_board_is_a_misfit(changes, phrase):
    board = variant(window=ConductanceWindow(1e-6, 150e-6), **changes)
    (problem,) = DEFAULT.misfits(board)
    assert phrase in problem


def test_check_board_names_every_misfit_in_one_line():
    profile = load_board_profile("board-default")
    board = variant(geometry__arrays=2, read_chain__adc_bits=8, limits__v_set_max=3.0)
    with pytest.raises(BadInput) as caught:
        profile.check_board(board, "B-7")
    message = str(caught.value)
    assert "\n" not in message and message.count("; ") == 2
    assert message.startswith("the deployment is for 3 arrays of 64x64, the board has 2 arrays "
                              "of 64x64; the board's ADCs have 8 bits, the deployment needs 9; "
                              "the board's SET")
    assert message.endswith("(profile board-default, board B-7)")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The shipped zero-one model compiled for board-default."""
    from click.testing import CliRunner
    from imssa_hw.cli.main import cli

    out = tmp_path_factory.mktemp("facts") / "deploy"
    model = resources.files("imssa_hw") / "models" / "zero-one.pt"
    result = CliRunner().invoke(cli, ["compile", str(model), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("command", ["program", "infer"])
def test_program_and_infer_refuse_a_board_that_does_not_fit_in_one_line(deployed, command):
    from click.testing import CliRunner
    from imssa_hw.cli.main import cli

    port = "emu://?set=read.adc_bits=8&set=limits.v_gate_max=5.0"
    limit = ["--limit", "2"] if command == "infer" else []
    result = CliRunner().invoke(cli, [command, str(deployed), "--port", port, *limit])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: the board's ADCs have 8 bits, the deployment needs 9; the "
                           "board's gate limit is 5 V, the deployment programs up to 5.5 V")


# -- the ArC TWO's facts ----------------------------------------------------------------------

ARC2_PROFILE = load_board_profile(arc2.PROFILE)


def test_the_arc2_backend_announces_its_profile():
    info = arc2.Arc2Board(object()).info
    spec = ARC2_PROFILE.spec
    assert info.spec.geometry == spec.geometry and info.spec.read_chain == spec.read_chain
    assert info.spec.window == replace(spec.window, tolerance_siemens=0.0)
    assert (info.limits.v_set_max, info.limits.v_gate_max) == (spec.limits.v_set_max,
                                                               spec.limits.v_gate_max)
    assert info.limits.v_reset_max == spec.limits.v_reset_max + arc2.RESET_MARGIN_V
    # what the backend drives, as it did before it read the profile: reads at 0.2 V with the
    # gates at 5.5 V, RESETs up to 2.0 V
    assert (arc2.DEFAULTS.v_read_v, arc2.READ_GATE_V, arc2.LIMITS.v_reset_max) == (0.2, 5.5, 2.0)
    assert arc2.DEFAULTS.read_range_a in spec.read_chain.adc_ranges_a
    passive = arc2.Arc2Board(object(), "passive").info
    assert passive.cell == "passive" and arc2.DEFAULT_KIND == spec.geometry.cell


def test_the_arc2_instrument_facts_agree_with_its_profile():
    geometry = ARC2_PROFILE.geometry
    default = load_mapping(DEFAULT_MAPPING)
    # one crossbar, wired through all of libarc2's word and bit channels by the default mapping
    assert geometry.arrays == 1
    assert (geometry.rows, geometry.cols) == (default.rows, default.cols)
    assert (geometry.rows, geometry.cols) == (len(arc2.ALL_WORDS), len(arc2.ALL_BITS))
    assert len(arc2.ALL_WORDS) + len(arc2.ALL_BITS) == arc2.CHANNELS
    # its three current ranges: 10.24 V over the 15 MOhm, 110 kOhm and 830 Ohm amplifiers
    assert ARC2_PROFILE.read.adc_ranges_a == pytest.approx(
        (10.24 / 15e6, 10.24 / 110e3, 10.24 / 830), rel=1e-5)
    # the deployment's pulses are ones the instrument makes and the backend sends
    assert arc2.SHORTEST_PULSE_S <= ARC2_PROFILE.limits.pulse_width_s <= arc2.LONGEST_PULSE_S
    # the profile's time per VMM holds the instrument's fixed waits
    assert arc2.VMM_SETTLE_S < ARC2_PROFILE.timing.vmm_time_s


def test_the_arc2_limits_beyond_its_profile_are_the_emulated_boards():
    """The same devices on the emulated board: 0.5 V of RESET margin over the programming
    ramp's top, pulses up to 1 ms."""
    emulated = load_emulator_profile(None).limits
    compiled = load_board_profile("board-default").limits
    assert emulated.v_reset_max - compiled.v_reset_max == pytest.approx(arc2.RESET_MARGIN_V)
    assert emulated.pulse_width_max_s == arc2.LONGEST_PULSE_S
    shipped = tomllib.loads((resources.files("imssa_hw") / "profiles" / "board-arc2.toml")
                            .read_text())
    assert shipped["limits"]["v_reset_max"] + arc2.RESET_MARGIN_V == arc2.LIMITS.v_reset_max
