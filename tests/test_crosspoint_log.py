"""Crosspoint histories in arc2control's HDF5 layout: `imssa-hw journal export` on a journal
written by hand (every value known), its bad input, the recording board of `calibrate --hdf5`,
and our files read by arc2control's own reader (tests/fixtures/arc2control/h5utils.py)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from arc2_standin import StandInArC2
from imssa_hw.cli.main import cli
from imssa_hw.drivers.arc2 import Arc2Board
from imssa_hw.drivers.crosspoint_log import CrosspointLog, RecordingBoard, write_logs
from imssa_hw.programming.journal import FORMAT, VERSION

HEADER = {"type": "header", "format": FORMAT, "version": VERSION, "t": 0.0, "arrays": [0, 1],
          "shape": [2, 2, 3], "board": {"board_id": "B", "arrays": 2, "rows": 2, "cols": 3},
          "config": {"v_read_v": 0.2, "pulse_width_s": 2e-8}}
RECORDS = [
    {"type": "read", "array": 1, "it": 1, "t": 1.0, "idx": None, "g_us": [1, 2, 3, 4, 5, 6]},
    {"type": "pulse", "array": 1, "it": 1, "t": 1.0, "status": {},
     "set": {"idx": [0, 4], "v": [2.0, 2.5], "gate": [1.0, 1.1]},
     "reset": {"idx": [5], "v": [1.2], "gate": [5.0]}},
    {"type": "sent", "array": 1, "it": 1, "t": 1.1, "set": 2, "reset": 1},
    {"type": "read", "array": 1, "it": 2, "t": 2.0, "idx": [0, 4, 5], "g_us": [50, 60, 0.5]},
    {"type": "read", "array": 0, "it": 1, "t": 1.0, "idx": None, "g_us": [9] * 6},
]


def write_journal(path, header=HEADER):
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *RECORDS]))
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_journal_export_writes_the_arc2_layout(tmp_path):
    journal = write_journal(tmp_path / "journal.jsonl")
    result = run("journal", "export", journal, "--out", tmp_path / "logs", "--arrays", "1")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "logs" / "journal.h5").exists()  # two arrays: one file per array
    with h5py.File(tmp_path / "logs" / "journal-array1.h5") as f:
        assert (f.attrs["words"], f.attrs["bits"]) == (2, 3)
        assert f.attrs["PYTABLES_FORMAT_VERSION"] == "2.1"
        assert (f.attrs["H5DS_VERSION_MAJOR"], f.attrs["H5DS_VERSION_MINOR"]) == (0, 2)
        assert set(f) == {"crossbar", "crosspoints", "synthetics", "sequences"}
        assert (f.attrs["array"], f.attrs["word_offset"], f.attrs["bit_offset"]) == (1, 0, 0)
        current, voltage = f["crossbar/current"][()], f["crossbar/voltage"][()]
        assert current.shape == (3, 2)  # (bits, words)
        assert current[0, 0] == pytest.approx(50e-6 * 0.2) and voltage[0, 0] == pytest.approx(0.2)
        assert current[1, 0] == pytest.approx(2e-6 * 0.2)  # word 0, bit 1: read once
        assert current[1, 1] == pytest.approx(60e-6 * 0.2)  # word 1, bit 1: its last read
        assert sorted(f["crosspoints"]) == [f"W{r:02d}B{c:02d}" for r in (0, 1) for c in (0, 1, 2)]
        first = f["crosspoints/W00B00/timeseries"]
        assert first.attrs["NROWS"] == 3
        rows = first[()]
        assert list(rows["op_type"]) == [1, 2, 1]
        assert np.allclose(rows["current"][[0, 2]], [1e-6 * 0.2, 50e-6 * 0.2])
        assert np.isnan(rows["current"][1]) and np.isnan(rows["read_voltage"][1])
        assert np.allclose(rows["voltage"], [0.2, 2.0, 0.2])
        assert np.allclose(rows["pulse_width"], [0, 2e-8, 0])
        reset = f["crosspoints/W01B02/timeseries"][()]
        assert list(reset["op_type"]) == [1, 2, 1] and reset["voltage"][1] == pytest.approx(-1.2)
        assert len(f["crosspoints/W00B01/timeseries"]) == 1


def test_journal_export_bad_input(tmp_path):
    old = write_journal(tmp_path / "old.jsonl", {k: v for k, v in HEADER.items() if k != "config"})
    result = run("journal", "export", old, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {old} does not record v_read_v and pulse_width_s (header config): give --v-read "
        f"and --pulse-width"]
    renamed = write_journal(tmp_path / "renamed.jsonl",  # the read voltage as named before 0.13
                            {**HEADER, "config": {"v_read": 0.2, "pulse_width_s": 2e-8}})
    result = run("journal", "export", renamed, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {renamed} does not record v_read_v (header config): give --v-read; it was "
        f"written before 0.13, whose config.v_read = 0.2 V is the read voltage"]
    result = run("journal", "export", old, "--out", tmp_path / "x", "--v-read", "0.1",
                 "--pulse-width", "1e-8")
    assert result.exit_code == 0 and (tmp_path / "x" / "old-array0.h5").is_file()
    with h5py.File(tmp_path / "x" / "old-array0.h5") as f:
        assert f["crossbar/voltage"][0, 0] == pytest.approx(0.1)
    journal = write_journal(tmp_path / "journal.jsonl")
    for args, message in ((["--arrays", "3"], "holds arrays 0, 1, not 3"),
                          (["--arrays", "x"], "--arrays must be comma-separated integers")):
        result = run("journal", "export", journal, "--out", tmp_path / "y", *args)
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1
    missing = run("journal", "export", tmp_path / "none.jsonl", "--out", tmp_path / "y")
    assert missing.exit_code == 2 and "journal not found" in missing.output


def test_the_recording_board_logs_what_passes_through(tmp_path):
    arc = StandInArC2("1T1R", seed=4, time_scale=100)
    board = Arc2Board(arc)
    recorder = RecordingBoard(board)
    assert recorder.info is board.info and recorder.capabilities is board.capabilities
    g = recorder.read_array(0)
    mask = np.zeros((32, 32), bool)
    mask[2, 3] = True
    recorder.set_pulses(0, 2.5, 1.2, mask)
    recorder.reset_pulses(0, 1.0, 5.0, mask)
    recorder.vmm(0, np.zeros(32))  # not a crosspoint operation: not logged
    assert recorder.write(tmp_path / "cal.h5") == [tmp_path / "cal.h5"]  # one array: the path
    with h5py.File(tmp_path / "cal.h5") as f:
        rows = f["crosspoints/W02B03/timeseries"][()]
        assert list(rows["op_type"]) == [1, 2, 2]
        assert np.allclose(rows["voltage"], [0.2, 2.5, -1.0])
        assert np.allclose(rows["pulse_width"], [0, 40e-9, 40e-9])
        assert len(f["crosspoints/W31B31/timeseries"]) == 1
        assert f["crossbar/current"][5, 5] == pytest.approx(g[5, 5] * 0.2, rel=1e-6)
        assert np.isnan(f["crossbar/current"][3, 2])  # its last operation: the RESET pulse
        assert f["crossbar/voltage"][3, 2] == pytest.approx(-1.0)


def arc2control_h5utils():
    """arc2control's h5utils module, loaded from the test data (it imports only numpy, h5py
    and the standard library)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "arc2control" / "h5utils.py"
    spec = importlib.util.spec_from_file_location("arc2control_h5utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arc2control_reads_a_64x64_array_as_four_32x32_files(tmp_path):
    """arc2control displays at most 32x32: a 64x64 array of the emulated boards is written as
    four parts, each a valid arc2control file (its own reader's checks), named by its first
    word and bit, with names inside counted from there."""
    h5utils = arc2control_h5utils()
    log = CrosspointLog(64, 64)
    g = np.random.default_rng(0).uniform(1e-6, 150e-6, (64, 64))
    g[40, 5] = -0.3e-6  # read noise around an off device: flagged, not a conductance
    g[0, 0] = 0.0
    read = np.zeros((64, 64), bool)  # a sparse read keeps the files small and the test quick
    read[::5, ::5] = read[33, 34] = read[32, 32] = read[40, 5] = True
    log.read(g, 0.2, read)
    mask = np.zeros((64, 64), bool)
    mask[33, 34] = True
    log.pulse(2.0, 20e-9, mask)
    written = write_logs({2: log}, tmp_path / "log.h5", board_arrays=3)
    names = ["log-array2-W00B00.h5", "log-array2-W00B32.h5", "log-array2-W32B00.h5",
             "log-array2-W32B32.h5"]
    assert [p.name for p in written] == names
    with h5utils.H5DataStore(str(tmp_path / names[3]), mode=h5utils.H5Mode.READ) as store:
        assert tuple(store.shape) == (32, 32)
        rows = store.timeseries(1, 2)  # board word 33, bit 34
        assert list(rows["op_type"]) == [h5utils.OpType.READ, h5utils.OpType.PULSE]
        assert rows["current"][0] == pytest.approx(g[33, 34] * 0.2, rel=1e-6)
        assert np.isnan(store.current[2, 1]) and store.voltage[2, 1] == pytest.approx(2.0)
        assert store.conductance[0, 0] == pytest.approx(g[32, 32], rel=1e-6)
        assert "sequences" in store.keys()
    with h5utils.H5DataStore(str(tmp_path / names[2]), mode=h5utils.H5Mode.READ) as store:
        flagged = store.timeseries(8, 5)  # board word 40, bit 5: read below zero
        assert np.isnan(flagged["current"][0]) and flagged["op_type"][0] == h5utils.OpType.READ
    with h5py.File(tmp_path / names[2]) as f:
        assert f["crosspoints/W08B05/timeseries"].attrs["NONPOSITIVE_READS"] == 1
        assert f.attrs["nonpositive_reads"] == 1 and "sequences" in f
        assert (f.attrs["word_offset"], f.attrs["bit_offset"], f.attrs["array"]) == (32, 0, 2)
    with h5py.File(tmp_path / names[0]) as f:
        assert f.attrs["nonpositive_reads"] == 1  # W00B00: a read of exactly zero
