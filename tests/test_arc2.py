"""The ArC TWO backend (drivers/arc2.py) on the pyarc2 stand-in (tests/arc2_standin.py): the
stand-in against the installed pyarc2, the channel mapping, pulses grouped into masked slices,
limits before any instrument call, refusals, `arc2://` with no instrument attached, and
calibrate -> compile -> program -> infer --mode host -> journal export from the command line."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time

import numpy as np
import pyarc2
import pytest
from click.testing import CliRunner

from arc2_standin import StandInArC2
from imssa_hw.cli.main import cli
from imssa_hw.drivers.arc2 import Arc2Board, parse_port
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.drivers.errors import BoardError, LinkError, Unsupported, VoltageLimitError
from imssa_hw.errors import BadInput

EXACT = {"read_chain.read_noise_rel": 0, "read_chain.tia_gain_sigma": 0}
STILL = {"relaxation.sigma_min_siemens": 0, "relaxation.sigma_max_siemens": 0,
         "retention.sigma_min_siemens": 0, "retention.sigma_max_siemens": 0,
         "defects.stuck_on_fraction": 0, "defects.stuck_off_fraction": 0}


def board_on(kind: str = "1t1r", **options) -> tuple[Arc2Board, StandInArC2]:
    arc = StandInArC2(kind, **options)
    return Arc2Board(arc, kind), arc


def exercise(board: Arc2Board) -> None:
    """Every operation of the backend once."""
    board.configure(v_read=0.15, pulse_width_s=1e-7)
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
    for kind in ("1t1r", "passive"):
        board, arc = board_on(kind, time_scale=50)
        exercise(board)
        for (name, _, _), (args, kwargs) in arc.calls.items():
            real = inspect.signature(getattr(pyarc2.Instrument, name))
            real.bind(None, *args, **kwargs)  # TypeError if pyarc2 would refuse the call
            called.add(name)
    public = {n for n, m in vars(StandInArC2).items() if callable(m) and not n.startswith("_")}
    public -= {"truth_siemens"}  # the tests' window on the devices, not an instrument method
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


@pytest.mark.parametrize("kind", ["1t1r", "passive"])
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
    assert calls["pulse_slice_masked"] == 3  # row 4 at two gates, row 9
    assert calls["config_selectors"] == 3 and calls["execute"] == 1
    time.sleep(0.02)
    g = board.read_array(0)
    assert np.median(g[4, 16:]) > 2 * np.median(g[4, :16]) > 4e-6  # the gate sets compliance
    passive, arc = board_on("passive", seed=2, time_scale=1000)
    passive.set_pulses(0, v, gate, mask)
    assert arc.counts["pulse_slice_masked"] == 2  # the gate plays no part: one slice per row
    assert arc.counts["config_selectors"] == arc.counts["config_aux_channels"] == 0


@pytest.mark.parametrize("call", [
    lambda b: b.set_pulses(0, 3.6, 1.0),
    lambda b: b.reset_pulses(0, 1.0, 5.6, np.eye(32, dtype=bool)),
    lambda b: b.set_pulses(0, np.where(np.eye(32, dtype=bool), -1.0, 1.0), 1.0),
    lambda b: b.vmm(0, np.full(32, 0.25)),
    lambda b: b.configure(pulse_width_s=10e-9),
    lambda b: b.configure(v_read=0.3),
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


@pytest.mark.parametrize("port,message", [
    ("arc2://x", "must be a number"),
    ("arc2://0?speed=fast", "unknown arc2:// option(s) speed"),
    ("arc2://0?array=3t2r", "array must be one of 1t1r, passive"),
])
def test_bad_arc2_ports(port, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_port(port)


def test_board_info_with_no_instrument_attached_is_one_line_exit_2():
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "board", "info", "--port",
                           "arc2://0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: no ArC TWO with id 0 is attached (pyarc2.find_ids() lists none)"]


@pytest.fixture(scope="module")
def arc2_port(tmp_path_factory):
    """arc2://0 with a firmware file, on one 1T1R stand-in that pyarc2 hands out (the opener's
    calls to pyarc2.find_ids and pyarc2.Instrument are replaced for these tests only)."""
    folder = tmp_path_factory.mktemp("arc2")
    firmware = folder / "fw.bin"
    firmware.write_bytes(b"\0")
    arc = StandInArC2("1t1r", seed=3, time_scale=20)
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
    status = run("board", "status", "--port", port)
    assert status.exit_code == 0 and json.loads(status.output)["config"]["pulse_width_s"] == 40e-9
    read = run("board", "read", "--port", port, "--out", folder / "g.npy")
    assert read.exit_code == 0 and np.load(folder / "g.npy").shape == (32, 32)
    missing = run("board", "info", "--port", "arc2://0")
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines() == [
        "Error: arc2://0: name the ArC TWO firmware file with ?firmware=PATH"]


def test_calibrate_program_infer_on_the_standin(arc2_port):
    """The whole flow from the command line, and the HDF5 logs it writes."""
    import h5py

    from imssa_hw.programming.journal import crosspoint_series, read_journal
    from test_inference import TINY
    from imssa_hw.training.trainer import train_task

    port, arc, folder = arc2_port
    refused = run("calibrate", "--port", port, "--smu", "TCPIP::127.0.0.1::1::SOCKET", "--out",
                  folder / "x")
    assert refused.exit_code == 2 and "capability smu_route" in refused.output
    result = run("calibrate", "--port", port, "--out", folder / "calib", "--settle", "0.05",
                 "--relax-delay", "0.05", "--sample", "64", "--reads", "2",
                 "--hdf5", folder / "calib.h5")
    assert result.exit_code == 0, result.output
    with h5py.File(folder / "calib.h5") as f:
        assert (f.attrs["words"], f.attrs["bits"]) == (32, 32)
        assert f["crosspoints/W00B00/timeseries"].attrs["NROWS"] > 10
    train_task(TINY, folder / "model.pt", model={"bits": 3, "h": 2, "n": 4}, epochs=12)
    result = run("compile", folder / "model.pt", "--out", folder / "deploy", "--profile",
                 "board-arc2", "--defects", folder / "calib" / "defects.json")
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
                 folder / "calib", "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["mode"] == "host" and data["n_samples"] == 12
    assert data["agreement"] >= 0.9
    journal = folder / "deploy" / "program" / "journal.jsonl"
    result = run("journal", "export", journal, "--out", folder / "program.h5")
    assert result.exit_code == 0, result.output
    records = read_journal(journal)
    with h5py.File(folder / "program.h5") as f:
        assert (f.attrs["words"], f.attrs["bits"]) == (32, 32)
        assert set(f) == {"crossbar", "crosspoints", "synthetics"}
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
