"""`imssa-hw board` and `imssa-hw emulate` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tty

import numpy as np
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from support.boards import NEEDS_PTY


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_board_info_json(module_board):
    result = run("board", "info", "--port", module_board.port)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["arrays"], info["rows"], info["cols"], info["protocol_version"]) == (2, 8, 8, 3)
    assert info["limits"]["v_set_max"] == 3.5


def test_board_read_writes_the_map(module_board, tmp_path):
    out = tmp_path / "maps"
    result = run("board", "read", "--port", module_board.port, "--array", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    g = np.load(out / "array1.npy")
    truth = module_board.truth_siemens()[1]
    assert g.shape == (8, 8) and np.abs(g - truth).max() < 5e-6
    summary = json.loads(result.output)
    assert summary["array"] == 1 and summary["max_siemens"] == g.max()


def test_port_from_the_environment(module_board):
    result = run("board", "status", env={"IMSSA_HW_PORT": module_board.port})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"]["v_read_v"] > 0


def test_bad_array_is_one_line(module_board, tmp_path):
    result = run("board", "read", "--port", module_board.port, "--array", "9", "--out",
                 str(tmp_path / "maps"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["Error: array 9 out of range 0..1 (board EMU-DPE-0001)"]
    assert not (tmp_path / "maps").exists()


def test_bad_port_is_one_line_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "board", "info", "--port",
                           str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"Error: port {tmp_path / 'nothing'} does not exist "
                                                "or nothing listens there"]


@NEEDS_PTY
def test_a_port_that_is_not_a_board(tmp_path):
    """A terminal nobody answers on: a one-line timeout error, exit 3 (the hardware failed)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        result = run("board", "info", "--port", os.ttyname(slave), "--timeout", "0.05")
    finally:
        os.close(master)
        os.close(slave)
    assert result.exit_code == 3 and result.output.startswith("Error: no valid reply from")
    assert len(result.output.strip().splitlines()) == 1


def test_missing_port_option():
    result = run("board", "info", env={"IMSSA_HW_PORT": None})
    assert result.exit_code == 2 and "Missing option '--port'" in result.output
