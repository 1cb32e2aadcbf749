"""Crosspoint histories in arc2control's HDF5 layout: `imssa-hw journal export` on a journal
written by hand (every value known), its bad input, and the recording board of
`calibrate --hdf5`."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from arc2_standin import StandInArC2
from imssa_hw.cli.main import cli
from imssa_hw.drivers.arc2 import Arc2Board
from imssa_hw.drivers.crosspoint_log import RecordingBoard
from imssa_hw.programming.journal import FORMAT, VERSION

HEADER = {"type": "header", "format": FORMAT, "version": VERSION, "t": 0.0, "arrays": [0, 1],
          "shape": [2, 2, 3], "board": {"board_id": "B", "arrays": 2, "rows": 2, "cols": 3},
          "config": {"v_read": 0.2, "pulse_width_s": 2e-8}}
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
    result = run("journal", "export", journal, "--out", tmp_path / "log.h5", "--arrays", "1")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "log.h5").exists()  # two arrays: one file per array
    with h5py.File(tmp_path / "log-array1.h5") as f:
        assert (f.attrs["words"], f.attrs["bits"]) == (2, 3)
        assert f.attrs["PYTABLES_FORMAT_VERSION"] == "2.1"
        assert set(f) == {"crossbar", "crosspoints", "synthetics"}
        current, voltage = f["crossbar/current"][()], f["crossbar/voltage"][()]
        assert current.shape == (3, 2)  # (bits, words)
        assert current[0, 0] == pytest.approx(50e-6 * 0.2) and voltage[0, 0] == pytest.approx(0.2)
        assert current[1, 0] == pytest.approx(2e-6 * 0.2)  # word 0, bit 1: read once
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
    result = run("journal", "export", old, "--out", tmp_path / "x.h5")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {old} does not record the read voltage and pulse width (written before they "
        f"were journaled): give --v-read and --pulse-width"]
    result = run("journal", "export", old, "--out", tmp_path / "x.h5", "--v-read", "0.1",
                 "--pulse-width", "1e-8")
    assert result.exit_code == 0 and (tmp_path / "x-array0.h5").is_file()
    with h5py.File(tmp_path / "x-array0.h5") as f:
        assert f["crossbar/voltage"][0, 0] == pytest.approx(0.1)
    journal = write_journal(tmp_path / "journal.jsonl")
    for args, message in ((["--arrays", "3"], "holds arrays 0, 1, not 3"),
                          (["--arrays", "x"], "--arrays must be comma-separated integers")):
        result = run("journal", "export", journal, "--out", tmp_path / "y.h5", *args)
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1
    missing = run("journal", "export", tmp_path / "none.jsonl", "--out", tmp_path / "y.h5")
    assert missing.exit_code == 2 and "journal not found" in missing.output


def test_the_recording_board_logs_what_passes_through(tmp_path):
    arc = StandInArC2("1t1r", seed=4, time_scale=100)
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
        assert f["crossbar/current"][3, 2] == pytest.approx(g[2, 3] * 0.2, rel=1e-6)
