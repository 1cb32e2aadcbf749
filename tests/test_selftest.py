"""`imssa-hw board selftest`: the first-contact checks pass on healthy boards (emulated, and the
ArC TWO stand-in, 1T1R and passive) and fail, naming what they saw, on boards broken in each
way they look for: a flipped current sign, a VMM that puts currents on other columns, selectors
that do not switch, a wrong mapping, a read chain far out of trim."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from arc2_standin import StandInArC2
from imssa_hw.drivers.arc2 import Arc2Board
from imssa_hw.drivers.arc2_mapping import load_mapping
from imssa_hw.drivers.open import open_board
from imssa_hw.hil.selftest import (MARKER_SIEMENS, SelfTestFailed, before_programming,
                                   require_passed, selftest)

PORT = "emu://?seed=5&arrays=1&rows=16&cols=16"


class Broken:
    """A board with one thing wrong (`vmm` or `set_pulses` replaced); the rest is the board's."""

    def __init__(self, board, **replaced):
        self.board, self.replaced = board, replaced

    def __getattr__(self, name):
        return self.replaced.get(name) or getattr(self.board, name)


def names(report) -> list[tuple[str, bool | None]]:
    return [(c.name, c.passed) for c in report.checks]


def test_an_emulated_board_passes_and_is_left_as_it_was():
    with open_board(PORT) as board:
        before = board.read_array(0)
        report = selftest(board)
        after = board.read_array(0)
        assert board.config.v_read_v == pytest.approx(0.2)  # restored
    assert names(report) == [("reads", True), ("sign", True), ("mapping", True),
                             ("selectors", True)], report.table()
    assert report.passed and report.failed == [] and report.to_dict()["passed"]
    assert report.table().splitlines()[0].split() == ["check", "result", "detail"]
    assert "W" in report.checks[2].detail and "RESET back" in report.checks[2].detail
    # the markers went back: every device within a few uS of where it started
    assert np.abs(after - before).max() < 6e-6, np.abs(after - before).max() * 1e6


def test_a_flipped_sign_fails_before_anything_is_pulsed():
    with open_board(PORT) as board:
        pulses = board.status().pulses_applied
        flipped = Broken(board, vmm=lambda array, v: -board.vmm(array, v))
        report = selftest(flipped)
        assert board.status().pulses_applied == pulses  # the mapping check did not run
    assert names(report)[:2] == [("reads", True), ("sign", False)]
    assert "flipped" in report.checks[1].detail and report.failed == ["sign"]
    with pytest.raises(SelfTestFailed, match="sign: .*flipped.*before programming"):
        require_passed(report)


FRESH = PORT + "&set=defects.stuck_on_fraction=0"
"""No bright device: the sign is measured on the mapping check's markers."""


def test_a_vmm_on_other_columns_fails():
    """With bright devices the sign check sees it (their columns carry nothing); on a fresh
    array the mapping check does (the markers' rows raise other columns)."""
    for port, failed in ((PORT, ["sign"]), (FRESH, ["sign", "mapping"])):
        with open_board(port) as board:
            swapped = Broken(board, vmm=lambda array, v: board.vmm(array, v)[::-1])
            report = selftest(swapped)
        assert report.failed == failed, report.table()
    assert "raised column" in report.checks[2].detail, report.table()


def test_a_fresh_array_measures_the_sign_on_the_markers():
    with open_board(FRESH) as board:
        report = selftest(board)
    assert report.passed and "markers" in report.checks[1].detail, report.table()


def test_selectors_that_do_not_switch_fail_and_the_device_is_reset():
    with open_board(PORT) as board:
        gate_max = board.info.limits.v_gate_max

        def gate_stuck_on(array, v_set, v_gate, mask=None):
            return board.set_pulses(array, v_set, np.maximum(v_gate, 1.5), mask)
        report = selftest(Broken(board, set_pulses=gate_stuck_on))
        assert board.read_array(0).max() < MARKER_SIEMENS + 200e-6 and gate_max > 1.5
        left = board.read_array(0)
    selectors = report.checks[-1]
    assert selectors.name == "selectors" and selectors.passed is False, report.table()
    assert "gate at 0 V moved" in selectors.detail
    assert np.sort(left.ravel())[-3] < MARKER_SIEMENS  # RESET back (stuck devices aside)


@pytest.mark.parametrize("kind,wired,told,expected", [
    ("1T1R", "resarray32", "resarray32", [True, True, True, True]),
    ("passive", "resarray32", "resarray32", [True, True, True, None]),
    # selector k gates another word line than the backend believes: the markers do not SET
    ("1T1R", "resarray32", "standard32", [True, True, False, True]),
])
def test_the_arc2_standin(kind, wired, told, expected):
    arc = StandInArC2(kind, seed=3, time_scale=100, mapping=load_mapping(wired))
    report = selftest(Arc2Board(arc, kind, mapping=load_mapping(told)))
    assert [c.passed for c in report.checks] == expected, report.table()


def test_read_only_and_the_guard_before_programming():
    with open_board(PORT) as board:
        pulses = board.status().pulses_applied
        checked = before_programming(board)
        assert board.status().pulses_applied == pulses
    assert [c.name for c in checked.checks] == ["reads", "sign"] and checked.passed


def test_the_command_prints_the_table_and_fails_in_one_line(tmp_path):
    out_of_trim = PORT + "&set=read_chain.tia_offset_sigma_fs=0.3"
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "board", "selftest",
                           "--port", out_of_trim, "--read-only", "--report",
                           str(tmp_path / "st.json")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines()[1].startswith("reads      FAIL")
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "failed its self-test (reads:" in errors[0]
    assert "Traceback" not in done.stderr


def test_reads_at_the_adcs_top_code_fail():
    """A device brighter than the read range reads at the ADC's top code (m - 1 codes, 0.996
    of full scale at 9 bits): the reads check counts it at full scale and fails."""
    with open_board(PORT) as board:
        board.configure(read_range_a=min(board.info.adc_ranges_a))
        report = selftest(board, pulses=False)
    detail = report.checks[0].detail  # "..., 0 outside 1-150 uS, 1 at full scale, ..."
    assert names(report)[0] == ("reads", False), report.table()
    assert " 0 outside " in detail and int(re.search(r"(\d+) at full scale", detail)[1]) >= 1
