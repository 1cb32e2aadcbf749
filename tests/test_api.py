"""The Python API (imssa_hw.api): the whole flow on a small board in this process, and what it
refuses. examples/ runs the same calls on the shipped model in CI (.ci/run)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
import sys

import numpy as np
import pytest

import imssa_hw as hw
from imssa_hw import api
from imssa_hw.calibration.data import load_calibration
from imssa_hw.calibration.outputs import write_outputs
from imssa_hw.calibration.settings import CalibrationSettings
from imssa_hw.compiler.defects import DefectMap, StuckDevice
from imssa_hw.emulator.clock import VIRTUAL, VIRTUAL_WAITS
from imssa_hw.errors import BadInput
from imssa_hw.programming.settings import ProgramSettings
from support.models import board_profile, make_checkpoint, sequences

PORT = "emu://?seed=3&arrays=1&rows=16&cols=16&set=relaxation.tau_s=0.05"
"""A small board whose devices relax fast, so that the short delays below suffice."""
QUICK_CALIBRATION = CalibrationSettings(settle_s=0.2, relax_delay_s=0.2)
QUICK_PROGRAMMING = ProgramSettings(settle_s=0.1, settle_small_s=0.05, verify_delay_s=0.2,
                                    verify_delay_small_s=0.1, min_iteration_s=0.01)


def test_import_is_light_and_names_are_one_list():
    code = "import sys, imssa_hw; print('torch' in sys.modules, imssa_hw.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"
    assert api.__all__ == list(hw.API)
    assert all(getattr(hw, name) is getattr(api, name) for name in hw.API)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hw.nope  # noqa: B018


@pytest.mark.slow
def test_flow_on_an_emulated_board(tmp_path):
    model = make_checkpoint(tmp_path / "m.pt", h=2, n=4, d_input=3, classes=2)
    profile = board_profile(arrays=1, rows=16, cols=16)
    x = sequences(6, 12, features=3)
    y = np.arange(6) % 2
    with hw.open_board(PORT) as b:
        run = hw.calibrate(b, settings=QUICK_CALIBRATION)
        dep = hw.compile(model, profile, calibration=run)
        programmed = hw.program(b, dep, calibration=run, journal=tmp_path / "j.jsonl",
                                settings=QUICK_PROGRAMMING)
        result = hw.infer(b, dep, model, calibration=run, features=x, labels=y)
    assert programmed.report["yield_working"] > 0.9
    assert (tmp_path / "j.jsonl").stat().st_size > 0
    assert result.hardware_logits.shape == (6, 2)
    assert result.agreement == np.mean(result.hardware_logits.argmax(-1)
                                       == result.software_logits.argmax(-1))
    assert result.report(2)["agreement"] == result.agreement
    # the same calibration as the folder `imssa-hw calibrate --out` writes
    write_outputs(run, tmp_path / "calib", plots=False)
    again = hw.compile(model, profile, calibration=tmp_path / "calib")
    np.testing.assert_array_equal(again.targets_siemens, dep.targets_siemens)
    assert load_calibration(tmp_path / "calib").board_id == run.calibration.board_id


def test_compile_reads_a_calibration_folders_defects(tmp_path):
    model = make_checkpoint(tmp_path / "m.pt", h=2, n=4, d_input=3, classes=2)
    profile = board_profile(arrays=1, rows=16, cols=16)
    used = np.argwhere(hw.compile(model, profile).used[0])[0]
    folder = tmp_path / "calib"
    folder.mkdir()
    DefectMap(1, 16, 16, (StuckDevice(0, int(used[0]), int(used[1]), "stuck_on", 150e-6),)
              ).save(folder / "defects.json")
    assert api._defects(folder, profile).stuck[0].row == used[0]
    assert api._defects(tmp_path, profile) is None


def test_refusals(tmp_path):
    with pytest.raises(BadInput, match="no shipped model 'nope'; shipped: .*zero-one"):
        hw.shipped_model("nope")
    model = make_checkpoint(tmp_path / "m.pt", h=2, n=4, d_input=3, classes=2)
    with pytest.raises(BadInput, match="labels without features"):
        hw.infer(None, None, model, labels=np.zeros(2))
    with pytest.raises(BadInput, match="features without labels"):
        hw.infer(None, None, model, features=np.zeros((2, 3, 3)))
    with pytest.raises(BadInput):
        hw.compile(model, "no-such-profile")


@pytest.mark.slow(seconds=1)
def test_a_quiet_read_chain_does_not_hold_a_device_for_ever(tmp_path):
    """No read noise and a calibration: a device targeted near the window's top, left inside the
    inner band, must still be accepted by the verify (its margin for the read chain's bias
    outgrew the band there: it held until the iteration cap, 2000 reads in 100 s). On virtual
    time: the waits of calibration and programming move this process's virtual clock."""
    model = make_checkpoint(tmp_path / "m.pt", h=2, n=4, d_input=3, classes=2)
    quiet = ("emu://?seed=3&arrays=1&rows=16&cols=16&set=read_chain.read_noise_rel=0"
             "&clock=virtual")
    with hw.open_board(quiet) as b:
        start = VIRTUAL.now()
        run = hw.calibrate(b, waits=VIRTUAL_WAITS)  # its read-chain fit: the bias verify allows
        calibrated = VIRTUAL.now()
        assert calibrated - start >= CalibrationSettings().settle_s  # it waited, virtually
        dep = hw.compile(model, board_profile(arrays=1, rows=16, cols=16), calibration=run)
        assert dep.targets_siemens[dep.used].max() > 130e-6  # where the margin outgrew the band
        programmed = hw.program(b, dep, calibration=run, waits=VIRTUAL_WAITS,
                                settings=replace(QUICK_PROGRAMMING, max_iterations=300))
    assert VIRTUAL.now() > calibrated
    assert programmed.report["unfinished"] == 0, programmed.report["iterations"]
    assert programmed.report["within_tolerance"] == programmed.report["devices"]
