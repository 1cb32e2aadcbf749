"""`imssa-hw compile` end to end, its bad-input errors, and no torch on the compile path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from support.models import make_checkpoint, profile_toml

from imssa_hw.cli.main import cli
from imssa_hw.board import load_board_profile
from imssa_hw.compiler import load_deployment
from imssa_hw.compiler.defects import DefectMap, StuckDevice


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.pt"
    make_checkpoint(path, h=8, n=4, bits=2, seed=1)
    return path


def test_compile_end_to_end(model, tmp_path):
    defects = DefectMap(3, 64, 64, (StuckDevice(0, 0, 0, "stuck_on", 150e-6),
                                    StuckDevice(0, 3, 5, "stuck_off", 0.5e-6)))
    defects.save(tmp_path / "defects.json")
    out, report = tmp_path / "deploy", tmp_path / "compile.json"
    result = CliRunner().invoke(cli, ["compile", str(model), "--out", str(out), "--defects",
                                      str(tmp_path / "defects.json"), "--report", str(report)])
    assert result.exit_code == 0, result.output
    for text in ("arrays used    2 of 3 (diagonal placement, at most 6 kernels per 64x64",
                 "tiles/array    4, 4 (spare rows 44, spare columns 24)",
                 "cells used     400 in tiles, 400 that matter (4.9 % of the arrays used)",
                 "7 signed (4 per device)",
                 "dG = 51.333 uS", "steps/sample   33", "2 stuck, 0 unavoidable"):
        assert text in result.output
    data = json.loads(report.read_text())
    assert data["arrays_used"] == 2 and data["cells_used"] == 8 * 5 * 10
    assert data["utilization"] == pytest.approx(400 / (2 * 64 * 64))
    assert data["ideal_max_abs_error"] < 1e-6 and data["unavoidable_defects"] == []
    assert (out / "targets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dep = load_deployment(out)
    assert not dep.used[0, 0, 0] or abs(dep.targets_siemens[0, 0, 0] - 150e-6) <= 4e-6


def test_dense_placement_option(model, tmp_path):
    out, report = tmp_path / "deploy", tmp_path / "compile.json"
    out.mkdir()
    (out / "targets.png").write_bytes(b"an earlier compile's")
    result = CliRunner().invoke(cli, ["compile", str(model), "--out", str(out), "--placement",
                                      "dense", "--report", str(report), "--no-plots"])
    assert result.exit_code == 0, result.output
    # --no-plots: no picture, and not an earlier one of other targets
    assert not (out / "targets.png").exists() and "targets.png" not in result.output
    assert f"wrote {out / 'deploy.json'}, {out / 'targets.npz'}, {report}" in result.output
    # dense spreads the tiles over every array; 3 tiles of 5x10 take 3 row bands x 1 column band
    for text in ("arrays used    3 of 3 (dense placement, at most 72 kernels per 64x64 array",
                 "tiles/array    3, 3, 2 (spare rows 49-54, spare columns 54)"):
        assert text in result.output
    data = json.loads(report.read_text())
    assert data["placement"] == "dense" and data["tiles_per_array"] == [3, 3, 2]
    assert data["ideal_max_abs_error"] < 1e-6
    assert load_deployment(out).placement.mode == "dense"
    _fails_with(["compile", str(model), "--out", str(tmp_path / "d"), "--placement", "dense",
                 "--parallel-tiles"],
                "dense placement cannot run the tiles of an array in parallel")
    help_text = CliRunner().invoke(cli, ["compile", "--help"]).output
    assert "--placement [auto|diagonal|dense]" in help_text and "else dense" in help_text


def _fails_with(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_not_quantized(tmp_path):
    path = tmp_path / "float.pt"
    make_checkpoint(path, bits=None)
    _fails_with(["compile", str(path), "--out", str(tmp_path / "d")], "not quantized")
    assert not (tmp_path / "d").exists()


def test_impossible_profile(model, tmp_path):
    data = load_board_profile("board-default").to_dict()
    data["conductance"]["g_max_us"] = 0.5
    (tmp_path / "p.toml").write_text("\n".join(profile_toml(data)))
    _fails_with(["compile", str(model), "--out", str(tmp_path / "d"), "--profile",
                 str(tmp_path / "p.toml")], "g_min < g_max, got 1 .. 0.5 uS")


def test_defect_map_of_another_board(model, tmp_path):
    DefectMap(2, 32, 32, ()).save(tmp_path / "defects.json")
    _fails_with(["compile", str(model), "--out", str(tmp_path / "d"), "--defects",
                 str(tmp_path / "defects.json")], "for a board of 2 arrays of 32x32")


def test_model_too_large_and_missing_checkpoint(tmp_path):
    big = tmp_path / "big.pt"
    make_checkpoint(big, h=64, n=16, bits=2)
    _fails_with(["compile", str(big), "--out", str(tmp_path / "d")],
                "(dense placement): 64 kernel tiles of 17x34 cells, 3 per 64x64 array, need 22 "
                "arrays; the board has 3 (short by 19 arrays, 55 tiles); arrays needed: "
                "diagonal 64, dense 22")
    _fails_with(["compile", str(big), "--out", str(tmp_path / "d"), "--placement", "diagonal"],
                "short by 61 arrays, 61 tiles); arrays needed: diagonal 64, dense 22")
    _fails_with(["compile", str(tmp_path / "none.pt"), "--out", str(tmp_path / "d")],
                "checkpoint not found")


NO_TORCH = """
import sys
import imssa_hw.compiler
assert "torch" not in sys.modules, "import imssa_hw.compiler imported torch"
from imssa_hw.cli.main import cli
try:
    cli(["compile", sys.argv[1], "--out", sys.argv[2], "--profile", "board-large"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("torch" in sys.modules)
"""


def test_compile_path_imports_no_torch(model, tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(model), str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "d" / "deploy.json").is_file()


def test_bad_input_in_a_real_process_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "compile",
                           str(tmp_path / "none.pt"), "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    expected = f"Error: checkpoint not found: {tmp_path / 'none.pt'}"
    assert done.stderr.strip().splitlines() == [expected]
