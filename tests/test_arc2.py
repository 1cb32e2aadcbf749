"""The ArC TWO backend (drivers/arc2.py) on the pyarc2 stand-in (tests/arc2_standin.py): the
stand-in against the installed pyarc2, arc2control's channel mappings (checked with arc2control's
own mapper, tests/fixtures/arc2control/), the devices and polarity arc2control would use, pulses
grouped into masked slices, limits before any instrument call, refusals, instrument faults and
panics as one-line errors, `arc2://` with no instrument attached, and calibrate -> compile ->
program -> infer --mode host -> journal export from the command line."""

from __future__ import annotations

import importlib.util
import inspect
import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pyarc2
import pytest
from click.testing import CliRunner

from arc2_standin import PanicException, StandInArC2
from imssa_hw.cli.main import cli
from imssa_hw.drivers.arc2 import Arc2Board, parse_port
from imssa_hw.drivers.arc2_mapping import (MAPPINGS_DIR, SHIPPED, ChannelMapping,
                                           load_mapping)
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.drivers.errors import BoardError, LinkError, Unsupported, VoltageLimitError
from imssa_hw.errors import BadInput

EXACT = {"read_chain.read_noise_rel": 0, "read_chain.tia_gain_sigma": 0}
STILL = {"relaxation.sigma_min_siemens": 0, "relaxation.sigma_max_siemens": 0,
         "retention.sigma_min_siemens": 0, "retention.sigma_max_siemens": 0,
         "defects.stuck_on_fraction": 0, "defects.stuck_off_fraction": 0}


CROSSBARS = ("standard32", "resarray32", "probecard32", "bnc6")
"""The shipped mappings that are crossbars (the sa-* ones have a mask)."""


def board_on(kind: str = "1T1R", **options) -> tuple[Arc2Board, StandInArC2]:
    """A board on a stand-in, both wired by the same mapping (`mapping=`, default resarray32)."""
    arc = StandInArC2(kind, **options)
    return Arc2Board(arc, kind, mapping=arc.mapping), arc


@pytest.fixture(scope="module")
def channel_mapper():
    """arc2control's `ChannelMapper` (tests/fixtures/arc2control/mapper.py, kept as test data),
    with Python's tomllib for the tomli it imports."""
    path = Path(__file__).parent / "fixtures" / "arc2control" / "mapper.py"
    saved = sys.modules.get("tomli")
    sys.modules["tomli"] = tomllib
    try:
        spec = importlib.util.spec_from_file_location("arc2control_mapper", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["tomli"]
        else:
            sys.modules["tomli"] = saved
    return module.ChannelMapper


def exercise(board: Arc2Board) -> None:
    """Every operation of the backend once."""
    board.configure(v_read_v=0.15, pulse_width_s=1e-7)
    board.read_array(0)
    board.read_device(0, 2, 3)
    board.vmm(0, np.linspace(-0.1, 0.1, 32))
    board.set_pulses(0, 2.5, 1.0, np.eye(32, dtype=bool))
    board.reset_pulses(0, 1.0, 5.0, np.eye(32, dtype=bool))
    board.close()


def test_the_standin_has_exactly_the_pyarc2_methods_the_backend_calls():
    """Checked against the installed pyarc2 with `inspect.signature`, which works on pyarc2
    0.6.0's compiled methods (their text signatures) and on its Python wrappers: every way the
    backend called a method binds to the real `pyarc2.Instrument` method, the stand-in's
    parameters are named as pyarc2's, and it has no method the backend did not call."""
    called: set[str] = set()
    for kind in ("1T1R", "passive"):
        board, arc = board_on(kind, time_scale=50)
        exercise(board)
        for (name, _, _), (args, kwargs) in arc.calls.items():
            real = inspect.signature(getattr(pyarc2.Instrument, name))
            real.bind(None, *args, **kwargs)  # TypeError if pyarc2 would refuse the call
            called.add(name)
    public = {n for n, m in vars(StandInArC2).items() if callable(m) and not n.startswith("_")}
    public -= {"truth_siemens", "truth_by_channels"}  # the tests' window on the devices
    assert public == called
    for name in public:
        ours = list(inspect.signature(getattr(StandInArC2, name)).parameters)
        theirs = list(inspect.signature(getattr(pyarc2.Instrument, name)).parameters)
        assert ours == theirs, name


def test_the_backend_is_board_like_parameter_for_parameter():
    board, _ = board_on(time_scale=50)
    assert isinstance(board, BoardLike)
    for name, member in vars(BoardLike).items():
        if callable(member) and not name.startswith("_"):
            wanted = list(inspect.signature(member).parameters)
            assert list(inspect.signature(getattr(Arc2Board, name)).parameters) == wanted, name


@pytest.mark.parametrize("kind", ["1T1R", "passive"])
def test_reads_and_vmm_follow_the_channel_map(kind):
    board, arc = board_on(kind, seed=1, time_scale=1000, settings={**EXACT, **STILL})
    mask = np.zeros((32, 32), bool)
    mask[3, 17] = mask[20, 5] = True
    assert board.set_pulses(0, 3.0, 1.4, mask) == 2
    time.sleep(0.02)
    truth = arc.truth_siemens()
    g = board.read_array(0)
    # what is left: the amplifiers' offsets, the ADC steps and the DACs' 0.3 mV steps
    assert np.all(np.abs(g - truth) < 0.02e-6 + 2e-3 * truth)
    assert set(zip(*np.nonzero(g > 20e-6))) == {(3, 17), (20, 5)}
    assert board.read_device(0, 20, 5) == pytest.approx(truth[20, 5], rel=2e-3, abs=0.02e-6)
    v = np.random.default_rng(0).uniform(-0.2, 0.2, 32)
    assert np.all(np.abs(board.vmm(0, v) - v @ truth) < 5e-9 + 2e-3 * (np.abs(v) @ truth))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_mappings_read_as_arc2control_reads_them(name, channel_mapper):
    """Device (row, col) is arc2control's wb2ch[row][col] = (high, low) = (word, bit) channels;
    the masked (separate-device) mappings are refused in one line."""
    theirs = channel_mapper.from_toml(str(MAPPINGS_DIR / f"{name}.toml"))
    if theirs.is_masked:
        with pytest.raises(BadInput) as refused:
            load_mapping(name)
        message = str(refused.value)
        assert "\n" not in message and f"{name}.toml: [config] mask:" in message
        assert "separate devices" in message and "not a crossbar" in message
        return
    ours = load_mapping(name)
    assert (ours.name, ours.title) == (name, theirs.name)
    assert (ours.rows, ours.cols) == (theirs.nwords, theirs.nbits)
    assert [[ours.channels(r, c) for c in range(ours.cols)] for r in range(ours.rows)] == [
        [tuple(pair) for pair in line] for line in theirs.wb2ch]
    board, _ = board_on(time_scale=50, mapping=ours)
    assert (board.info.rows, board.info.cols) == (theirs.nwords, theirs.nbits)


@pytest.mark.parametrize("text,message", [
    ("[config]\nwords = 2\nbits = 2\n", "no [mapping] table"),
    ("[config]\nwords = 2\nbits = 2\n[mapping]\nwords = [16, 17]\nbits = [0, 64]\n",
     "[mapping] bits: channel 64 outside 0..63"),
    ("[config]\nwords = 2\nbits = 2\n[mapping]\nwords = [16, 16]\nbits = [0, 1]\n",
     "[mapping] words: channel(s) 16 listed more than once"),
    ("[config]\nwords = 3\nbits = 2\n[mapping]\nwords = [16, 17]\nbits = [0, 1]\n",
     "[mapping] words lists 2 channels, [config] words says 3"),
    ("[config]\nwords = 2\nbits = 2\n[mapping]\nwords = [16, 1]\nbits = [0, 1]\n",
     "[mapping] words and bits share channel(s) 1"),
    ("[config]\nwords = 2\nbits = 2\n[mapping]\nwords = [16, 17.0]\nbits = [0, 1]\n",
     "[mapping] words must be a list of channel numbers"),
    ("[config]\nbits = 2\n[mapping]\nwords = [16, 17]\nbits = [0, 1]\n",
     "[config] words must be a positive integer"),
    ("[config]\nwords = 1\nbits = 1\nmask = [[0, 0]]\n[mapping]\nwords = [16]\nbits = [0]\n",
     "[config] mask: this mapping describes separate devices"),
    ("words = [\n", "not a readable UTF-8 TOML file"),
])
def test_bad_mapping_files_are_refused_in_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as refused:
        load_mapping(path)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
    assert message in str(refused.value)
    with pytest.raises(BadInput, match="neither one arc2control ships"):
        load_mapping(tmp_path / "missing.toml")


def test_a_lab_mapping_file_and_the_channels_libarc2_needs(tmp_path):
    path = tmp_path / "two-by-three.toml"
    path.write_text("[config]\nwords = 2\nbits = 3\n[mapping]\nwords = [63, 16]\n"
                    "bits = [47, 0, 15]\n", encoding="utf-8")
    mapping = load_mapping(path)
    assert mapping == ChannelMapping("two-by-three", (63, 16), (47, 0, 15), "two-by-three")
    assert parse_port(f"arc2://0?mapping={path}").mapping == mapping
    board, arc = board_on(time_scale=50, mapping=mapping)
    assert board.read_array(0).shape == (2, 3) == arc.truth_siemens().shape
    swapped = ChannelMapping("swapped", (0, 1), (16, 17))  # word lines on bit channels
    with pytest.raises(BadInput, match="word line 0 is on channel 0; libarc2 needs word lines "
                                       "on channels 16-31, 48-63"):
        Arc2Board(StandInArC2(time_scale=50), mapping=swapped)


@pytest.mark.parametrize("name", ["standard32", "resarray32"])
def test_the_board_uses_the_devices_and_polarity_arc2control_would(name, channel_mapper):
    """Device (r, c) of the board is the device arc2control calls W{r}B{c}: between the channels
    (high, low) = wb2ch[r][c]; SET and RESET act on it with arc2control's polarity, and a whole-
    array read agrees with arc2control's own indexing of read_all(.., BiasOrder.Cols)."""
    theirs = channel_mapper.from_toml(str(MAPPINGS_DIR / f"{name}.toml"))
    settings = {**EXACT, **STILL}
    board, arc = board_on(seed=4, time_scale=1000, settings=settings, mapping=load_mapping(name))

    def at_channels(g_by_channels: np.ndarray) -> np.ndarray:
        """(words, bits) of a [high, low] channel matrix, as arc2control maps them."""
        return np.array([[g_by_channels[theirs.wb2ch[w][b]] for b in range(32)]
                         for w in range(32)])

    before = arc.truth_by_channels()
    mask = np.zeros((32, 32), bool)
    mask[1, 0] = True  # W01B00: standard32 (63, 15), resarray32 (16, 1)
    board.set_pulses(0, 3.0, 1.4, mask)
    after = arc.truth_by_channels()
    changed = np.argwhere(np.abs(after - before) > 1e-9)
    assert [tuple(c) for c in changed] == [theirs.wb2ch[1][0]]
    high, low = theirs.wb2ch[1][0]
    assert after[high, low] > before[high, low] + 10e-6  # SET: the word line above the bit line
    time.sleep(0.01)

    g = board.read_array(0)
    truth = at_channels(arc.truth_by_channels())
    assert np.all(np.abs(g - truth) < 0.02e-6 + 2e-3 * truth)
    # arc2control's readAllClicked (widgets/app.py at 52ba1f2) on the same instrument
    v = board.config.v_read_v
    raw = arc.read_all(v, pyarc2.BiasOrder.Cols)
    data = np.empty((32, 32))
    for channel in sorted(theirs.ch2b):
        idx = (channel % 16) + (channel // 32) * 16
        data[theirs.ch2b[channel]] = raw[idx][theirs.word_idxs][0:32]
    assert np.allclose(np.abs(data).T / v, g, rtol=1e-6, atol=0)  # stored [bit, word]
    assert board.read_device(0, 1, 0) == pytest.approx(truth[1, 0], rel=2e-3)
    # read_one(low=bit, high=word) as arc2control's readSelectedCell (|I| is the same either
    # way on the stand-in's linear devices, so the call itself is checked)
    assert arc.calls["read_one", 0, ("high", "low", "vread")][1] == {"low": low, "high": high,
                                                                     "vread": v}

    rows = np.random.default_rng(1).uniform(-0.2, 0.2, 32)
    expected = rows @ truth
    assert np.all(np.abs(board.vmm(0, rows) - expected) < 5e-9 + 2e-3 * (np.abs(rows) @ truth))

    # a pulse as arc2control gives it (pulse_slice_masked(low=bit, voltage, .., highs=[word]))
    # SETs the device our board reads at the same (word, bit)
    high, low = theirs.wb2ch[5][9]
    arc.pulse_slice_masked(low, 3.0, 100, [high])
    arc.execute()
    assert board.read_device(0, 5, 9) > 10e-6 > truth[5, 9]
    board.reset_pulses(0, 2.0, 5.5, mask)  # RESET: the bit line above the word line
    high, low = theirs.wb2ch[1][0]
    assert arc.truth_by_channels()[high, low] < 0.5 * after[high, low]


def test_the_vmm_current_sign_is_measured_once(monkeypatch):
    """The stand-in's bit lines report negative currents for positive rows (a channel measures
    the current it sources); an instrument reporting the other sign gives the same VMM."""
    results = {}
    for flip in (1.0, -1.0):
        board, arc = board_on(seed=5, time_scale=1000, settings={**EXACT, **STILL})
        measure = arc.read_slice_open
        monkeypatch.setattr(arc, "read_slice_open", lambda highs, ground_after, m=measure, f=flip:
                            f * m(highs, ground_after))
        rows = np.linspace(-0.2, 0.2, 32)
        assert board.vmm_current_sign is None
        results[flip] = board.vmm(0, rows), board.vmm_current_sign
        assert board.vmm(0, rows) == pytest.approx(results[flip][0], abs=1e-9)
        assert arc.counts["read_slice_open"] == 3  # the sign once, then one per VMM
        truth = arc.truth_siemens()
        error = np.abs(results[flip][0] - rows @ truth)
        assert np.all(error < 5e-9 + 2e-3 * (np.abs(rows) @ truth))
    assert (results[1.0][1], results[-1.0][1]) == (-1.0, 1.0)


def test_pulses_go_as_masked_slices_by_row_voltage_and_gate():
    board, arc = board_on(seed=2, time_scale=1000, settings={**EXACT, **STILL})
    v = np.full((32, 32), 3.0)
    gate = np.full((32, 32), 0.8)
    gate[:, 16:] = 1.4
    mask = np.zeros((32, 32), bool)
    mask[4, :] = mask[9, 2] = True
    before = arc.counts.copy()
    board.set_pulses(0, v, gate, mask)
    calls = arc.counts - before
    # one slice per bit line (low) and (voltage, gate), its word lines high, as arc2control's
    # slice pulses: 32 columns; column 2 pulses rows 4 and 9 together (same voltage and gate)
    assert calls["pulse_slice_masked"] == 32
    assert calls["execute"] == 1
    # selectors: row 4 at 0.8 V, rows 4 and 9 (column 2), row 4 again, row 4 at 1.4 V
    assert calls["config_selectors"] == 4 and calls["config_aux_channels"] == 2
    time.sleep(0.02)
    g = board.read_array(0)
    assert np.median(g[4, 16:]) > 2 * np.median(g[4, :16]) > 4e-6  # the gate sets compliance
    passive, arc = board_on("passive", seed=2, time_scale=1000)
    passive.set_pulses(0, v, gate, mask)
    assert arc.counts["pulse_slice_masked"] == 32  # the gate plays no part: one per column
    assert arc.counts["config_selectors"] == arc.counts["config_aux_channels"] == 0


@pytest.mark.parametrize("call", [
    lambda b: b.set_pulses(0, 3.6, 1.0),
    lambda b: b.reset_pulses(0, 1.0, 5.6, np.eye(32, dtype=bool)),
    lambda b: b.set_pulses(0, np.where(np.eye(32, dtype=bool), -1.0, 1.0), 1.0),
    lambda b: b.vmm(0, np.full(32, 0.25)),
    lambda b: b.configure(pulse_width_s=10e-9),
    lambda b: b.configure(v_read_v=0.3),
])
def test_limits_are_checked_before_any_instrument_call(call):
    board, arc = board_on(time_scale=50)
    with pytest.raises(VoltageLimitError, match="V|width"):
        call(board)
    assert sum(arc.counts.values()) == 0


def test_what_arc2_cannot_do_is_refused_in_one_line():
    board, arc = board_on(time_scale=50)
    for call in (lambda: board.load_program([]), lambda: board.run_sequence(np.zeros((2, 1)))):
        with pytest.raises(Unsupported, match="no on-board loop .*on_board_loop"):
            call()
    with pytest.raises(Unsupported, match="smu_route"):
        board.route_smu(0, 1, 1)
    board.route_smu(None)  # nothing routed: nothing to do
    with pytest.raises(BoardError, match="array 1 out of range"):
        board.read_array(1)
    assert sum(arc.counts.values()) == 0
    assert (board.capabilities.on_board_loop, board.capabilities.smu_route,
            board.capabilities.pulse_gate) == (False, False, "grouped")
    assert isinstance(Unsupported("x"), BadInput)


def test_instrument_errors_are_hardware_errors(monkeypatch):
    board, arc = board_on(time_scale=50)

    def broken(*args, **kwargs):
        raise pyarc2.ArC2Error("FPGA Error: device disconnected")
    monkeypatch.setattr(arc, "read_all", broken)
    with pytest.raises(LinkError, match="ArC TWO read_all: FPGA Error: device disconnected"):
        board.read_array(0)


@pytest.mark.parametrize("name,call", [
    ("read_one", lambda b: b.read_device(0, 2, 3)),
    ("read_all", lambda b: b.read_array(0)),
    ("read_slice_open", lambda b: b.vmm(0, np.zeros(32))),
    ("pulse_slice_masked", lambda b: b.set_pulses(0, 2.0, 1.0)),
    ("execute", lambda b: b.reset_pulses(0, 1.0, 5.0)),
])
def test_a_panic_in_pyarc2_is_one_line_naming_the_call(name, call):
    """pyarc2 unwraps libarc2's results: a fault is pyo3's PanicException, a BaseException."""
    board, arc = board_on(time_scale=50)
    arc.panics.add(name)
    with pytest.raises(LinkError) as fault:
        call(board)
    assert str(fault.value) == (f"ArC TWO {name}: PanicException: called `Result::unwrap()` on "
                                f"an `Err` value: stand-in fault in {name}")
    assert not issubclass(PanicException, Exception)
    arc.panics.clear()
    call(board)  # the instrument works again: nothing in the backend is left half-done


@pytest.mark.parametrize("port,message", [
    ("arc2://x", "must be a number"),
    ("arc2://0?speed=fast", "unknown arc2:// option(s) speed"),
    ("arc2://0?array=3t2r", "array must be one of 1T1R, passive, got '3t2r'"),
    ("arc2://0?mapping=standard64", "mapping 'standard64' is neither one arc2control ships"),
    ("arc2://0?mapping=sa-standard32", "sa-standard32.toml: [config] mask: this mapping "
                                       "describes separate devices"),
])
def test_bad_arc2_ports(port, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse_port(port)


def test_the_array_kind_is_typed_in_any_case_and_kept_in_one_spelling():
    assert parse_port("arc2://0").array_kind == "1T1R"
    assert {parse_port(f"arc2://0?array={typed}").array_kind
            for typed in ("1t1r", "1T1R")} == {"1T1R"}
    assert parse_port("arc2://0?array=Passive").array_kind == "passive"
    with pytest.raises(BadInput, match="array kind must be one of 1T1R, passive, got '1t1r'"):
        Arc2Board(StandInArC2(), "1t1r")


def test_the_default_mapping_is_arc2controls_default():
    assert parse_port("arc2://0").mapping == load_mapping("resarray32")
    assert parse_port("arc2://0?mapping=bnc6").mapping.words == (16, 17, 18, 48, 49, 50)


def test_board_info_with_no_instrument_attached_is_one_line_exit_2():
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "board", "info", "--port",
                           "arc2://0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: no ArC TWO with id 0 is attached (pyarc2.find_ids() lists none)"]


def test_a_reply_timeout_is_refused_for_an_arc2_port():
    """The ArC TWO's calls block until it is done: --timeout would do nothing, so it is refused
    before anything opens; serial ports keep their default."""
    done = CliRunner().invoke(cli, ["board", "info", "--port", "arc2://0", "--timeout", "2"])
    assert done.exit_code == 2 and done.output.strip().splitlines() == [
        "Error: arc2://0: a reply timeout does nothing on an ArC TWO (its calls block until the "
        "instrument is done); leave it out"]


@pytest.fixture(scope="module")
def arc2_port(tmp_path_factory):
    """arc2://0 with a firmware file, on one 1T1R stand-in that pyarc2 hands out (the opener's
    calls to pyarc2.find_ids and pyarc2.Instrument are replaced for these tests only)."""
    folder = tmp_path_factory.mktemp("arc2")
    firmware = folder / "fw.bin"
    firmware.write_bytes(b"\0")
    arc = StandInArC2("1T1R", seed=3, time_scale=20)
    patch = pytest.MonkeyPatch()
    patch.setattr(pyarc2, "find_ids", lambda: [0])
    patch.setattr(pyarc2, "Instrument", lambda port, fw: arc)
    yield f"arc2://0?firmware={firmware}", arc, folder
    patch.undo()


def run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_board_commands_on_the_standin(arc2_port):
    port, _, folder = arc2_port
    result = run("board", "info", "--port", port)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["arrays"], info["rows"], info["cols"], info["adc_bits"]) == (1, 32, 32, 18)
    assert info["capabilities"] == {"on_board_loop": False, "smu_route": False,
                                    "pulse_gate": "grouped"}
    assert info["mapping"] == "resarray32" and "mapping" not in info["firmware"]
    bnc6 = run("board", "info", "--port", f"{port}&mapping=bnc6")
    assert bnc6.exit_code == 0, bnc6.output
    info = json.loads(bnc6.output)
    assert (info["rows"], info["cols"]) == (6, 6) and info["mapping"] == "bnc6"
    masked = run("board", "info", "--port", f"{port}&mapping=sa-probecard32")
    assert masked.exit_code == 2 and len(masked.output.strip().splitlines()) == 1
    assert "separate devices" in masked.output
    status = run("board", "status", "--port", port)
    assert status.exit_code == 0 and json.loads(status.output)["config"]["pulse_width_s"] == 40e-9
    read = run("board", "read", "--port", port, "--out", folder / "maps")
    assert read.exit_code == 0 and np.load(folder / "maps" / "array0.npy").shape == (32, 32)
    missing = run("board", "info", "--port", "arc2://0")
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines() == [
        "Error: arc2://0: name the ArC TWO firmware file with ?firmware=PATH"]


def test_a_panic_on_the_command_line_is_one_line_exit_3(arc2_port):
    port, arc, folder = arc2_port
    arc.panics.add("read_all")
    try:
        result = run("board", "read", "--port", port, "--out", folder / "panic")
    finally:
        arc.panics.clear()
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        "Error: ArC TWO read_all: PanicException: called `Result::unwrap()` on an `Err` value: "
        "stand-in fault in read_all"]


@pytest.mark.slow(seconds=12)
def test_calibrate_program_infer_on_the_standin(arc2_port, tiny_model):
    """The whole flow from the command line, and the HDF5 logs it writes."""
    import h5py

    from imssa_hw.programming.journal import crosspoint_series, read_journal

    port, arc, folder = arc2_port
    refused = run("calibrate", "--port", port, "--smu", "TCPIP::127.0.0.1::1::SOCKET", "--out",
                  folder / "x")
    assert refused.exit_code == 2 and "capability smu_route" in refused.output
    result = run("calibrate", "--port", port, "--out", folder / "calib", "--settle", "0.05",
                 "--relax-delay", "0.05", "--sample", "64", "--reads", "2",
                 "--hdf5", folder / "calib.h5", "--no-plots")
    assert result.exit_code == 0, result.output
    with h5py.File(folder / "calib.h5") as f:
        assert (f.attrs["words"], f.attrs["bits"]) == (32, 32)
        assert f["crosspoints/W00B00/timeseries"].attrs["NROWS"] > 10
    shutil.copy(tiny_model, folder / "model.pt")
    result = run("compile", folder / "model.pt", "--out", folder / "deploy", "--profile",
                 "board-arc2", "--defects", folder / "calib" / "defects.json", "--no-plots")
    assert result.exit_code == 0, result.output
    result = run("program", folder / "deploy", "--port", port, "--calibration", folder / "calib",
                 "--settle", "0.05", "--verify-delay", "0.1", "--no-plots")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["yield_working"] > 0.95
    onboard = run("infer", folder / "deploy", "--port", port)
    assert onboard.exit_code == 2
    assert onboard.output.strip().splitlines() == [
        "Error: board ArC2-0 has no on-board loop (capability on_board_loop is false): use "
        "host mode (infer --mode host)"]
    report = folder / "infer" / "infer.json"
    result = run("infer", folder / "deploy", "--port", port, "--mode", "host", "--calibration",
                 folder / "calib", "--report", report, "--no-plots")
    assert result.exit_code == 0, result.output
    assert [p.name for p in report.parent.iterdir()] == ["infer.json"]  # --no-plots
    data = json.loads(report.read_text())
    assert data["mode"] == "host" and data["n_samples"] == 12
    assert data["agreement"] >= 0.9
    journal = folder / "deploy" / "program" / "journal.jsonl"
    result = run("journal", "export", journal, "--out", folder / "logs")
    assert result.exit_code == 0, result.output
    records = read_journal(journal)
    with h5py.File(folder / "logs" / "journal.h5") as f:
        assert (f.attrs["words"], f.attrs["bits"]) == (32, 32)
        assert set(f) == {"crossbar", "crosspoints", "synthetics", "sequences"}
        raster = (f["crossbar/current"][()] / f["crossbar/voltage"][()]).T  # stored (bits, words)
        programmed = np.argwhere(raster > 20e-6)
        assert len(programmed) > 10
        on = raster > 20e-6
        # the latest reads against the devices now: a device read right after its last pulse
        # has relaxed since by up to a few uS, so most, not all, are within 10 %
        close = np.abs(raster - arc.truth_siemens())[on] < 0.1 * raster[on]
        assert close.mean() >= 0.9, close.mean()
        row, col = programmed[0]
        history = crosspoint_series(records, 0, row, col)
        reads = [h["g_siemens"] for h in history if h["op"] == "read"]
        assert raster[row, col] == pytest.approx(reads[-1], rel=1e-5)  # the latest read
        series = f[f"crosspoints/W{row:02d}B{col:02d}/timeseries"][()]
        assert set(series.dtype.names) == {"current", "voltage", "pulse_width", "read_voltage",
                                           "op_type"}
        assert len(series) == len(history)
        assert list(series["op_type"]) == [1 if h["op"] == "read" else 2 for h in history]
        pulses = series[series["op_type"] == 2]
        assert np.all(pulses["pulse_width"] == np.float32(40e-9))
        expected = [h["v"] * (1 if h["op"] == "set" else -1) for h in history if h["op"] != "read"]
        assert np.allclose(pulses["voltage"], expected, atol=1e-6) and (pulses["voltage"] > 0).any()
