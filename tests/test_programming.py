"""Write-verify programming (`imssa_hw.programming`, `imssa-hw program`) on emulated boards.

Small arrays and short relaxation (tau 0.1 s, with the settle and verify delays to match) keep
the file fast; every emulator runs in its own process behind a real pty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.board import PulseLimits
from imssa_hw.compiler.defects import load_defects
from imssa_hw.drivers.board import Board
from imssa_hw.emulator.devices import HEALTHY
from imssa_hw.emulator.state import load_state
from imssa_hw.errors import BadInput
from imssa_hw.programming import (ProgramSettings, Tolerance, merge_defects, parse_tolerance,
                                  program_targets)
from imssa_hw.programming.journal import (crosspoint_series, parse_record, pulse_batches,
                                          read_journal)
from imssa_hw.programming.plots import PLOTS
from imssa_hw.programming.settings import DEFAULT_READ_NOISE_REL
from imssa_hw.programming.strategies import make_strategy
from imssa_hw.programming.strategy import STUCK, VERIFIED
from support.boards import (EXACT_CHAIN, FAST_DEVICES, NOISELESS, ON_VIRTUAL_TIME, STILL, emu_url,
                            healthy)
from support.programming import (FAST, FAST_CLI, PROFILE, DiesAfterSending, four_bit_targets,
                                 make_deployment)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout)


# -- pieces without a board -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2uS", Tolerance(abs_siemens=2e-6)), ("2 uS", Tolerance(abs_siemens=2e-6)),
    ("0.002mS", Tolerance(abs_siemens=2e-6)), ("5%", Tolerance(abs_siemens=0.0, rel=0.05))])
def test_tolerance_parsing(text, expected):
    got = parse_tolerance(text)
    assert got.abs_siemens == pytest.approx(expected.abs_siemens) and got.rel == pytest.approx(expected.rel)
    assert np.allclose(parse_tolerance("5%").with_floor(1e-6).of(np.array([10e-6, 100e-6])),
                       [1e-6, 5e-6])


@pytest.mark.parametrize("text", ["2", "abc", "-2uS", "0uS", "2 volts", "150%", "0.2S"])
def test_bad_tolerance_is_refused(text):
    with pytest.raises(BadInput):
        parse_tolerance(text)


def test_torn_last_journal_line_is_dropped(tmp_path):
    path = tmp_path / "j.jsonl"
    header = {"type": "header", "format": "imssa-hw-program-journal", "version": 1,
              "shape": [1, 2, 2]}
    path.write_text(json.dumps(header) + "\n" + '{"type": "read", "arr')
    assert read_journal(path) == [header]
    path.write_text(json.dumps(header) + "\nnot json\n{}\n")
    with pytest.raises(BadInput, match=":2:"):
        read_journal(path)


# -- on the emulator ----------------------------------------------------------------------------

@pytest.mark.slow
def test_small_array_converges(emulated_board, tmp_path):
    emu = emulated_board(virtual_time=True, arrays=1, rows=16, cols=16, seed=2,
                         settings={**FAST_DEVICES, **EXACT_CHAIN})
    targets = four_bit_targets((1, 16, 16))
    with Board.open(emu.port) as board:
        result = program_targets(board, targets, np.ones_like(targets, bool), settings=FAST, **ON_VIRTUAL_TIME,
                                 off_siemens=PROFILE.conductance.g_min_siemens, journal=tmp_path / "j.jsonl")
    r = result.report
    assert r["unfinished"] == 0 and r["yield_working"] == 1.0
    assert r["mean_pulses_per_device"] < 8 and r["iterations"] > 1 and r["frames"] > r["iterations"]
    devices = emu.state().devices
    ok = healthy(emu) & (result.status == VERIFIED)
    assert ok.sum() >= 250
    truth = devices.g_final_siemens  # relaxed
    # within 2 uS, plus the read noise of a single device's estimate at 150 uS
    assert np.abs(truth - targets)[ok].max() < 2.5e-6
    assert np.mean(np.abs(truth - targets)[ok] <= 2e-6) >= 0.99
    # the journal tells each device's story: its last pulse comes before its verification
    records = read_journal(tmp_path / "j.jsonl")
    row, col = np.argwhere(ok[0] & (result.pulses[0] > 0))[0]
    series = crosspoint_series(records, 0, row, col)
    assert [e["op"] for e in series].count("read") > 3
    assert sum(e["op"] != "read" for e in series) == result.pulses[0, row, col]


@pytest.mark.slow(seconds=1)
def test_noisy_reads_at_the_window_top_are_not_chased(emulated_board):
    """2 % read noise (3 uS at the top of the window, beyond the 2 uS tolerance) and the
    harsh profile's SET noise: single noisy reads must not pass for coarse errors. Before the
    coarse rule weighed the estimate's uncertainty, a quarter of these devices were pulsed 40
    times and given up (25.8 pulses each on average)."""
    noisy_top = {"read_chain.read_noise_rel": 0.02, "device.set_c2c_sigma_siemens": 4.78e-6,
                 "device.set_c2c_slope": -0.0091}
    # on virtual time: how far devices relaxed between a pulse and its verify is the program's
    # waits alone, not the machine's speed (it failed once, traced by coverage, on wall time)
    emu = emulated_board(virtual_time=True, arrays=1, rows=8, cols=8, seed=3,
                         settings={**FAST_DEVICES, **EXACT_CHAIN, **noisy_top})
    targets = np.full((1, 8, 8), PROFILE.conductance.g_max_siemens)
    with Board.open(emu.port) as board:
        result = program_targets(board, targets, np.ones_like(targets, bool),
                                 **ON_VIRTUAL_TIME, settings=replace(FAST, read_noise_rel=0.02),
                                 off_siemens=PROFILE.conductance.g_min_siemens)
    ok = healthy(emu)
    assert not (result.status[ok] == STUCK).any()
    assert result.report["mean_pulses_per_device"] < 10
    error = emu.state().devices.g_final_siemens - targets
    assert np.sqrt(np.mean(error[ok] ** 2)) < 1.2e-6


@pytest.mark.parametrize("strategy", ["adaptive", "refresh"])
def test_a_quiet_off_device_within_its_band_is_verified(strategy):
    """An off-target device whose reads never move (a few ADC codes, no noise to dither them)
    and whose estimate sits within the tolerance, but too near its edge to leave room for the
    read chain's residual bias: it is at its floor, which no pulse lowers. It used to wait
    until the run's iteration limit (one device left unfinished after refresh on harsh board
    8 of the fidelity bench)."""
    targets = np.full((1, 1, 2), 1e-6)
    targets[0, 0, 1] = 100e-6
    strat = make_strategy(strategy, targets, np.ones_like(targets, bool), [0],
                          tolerance=Tolerance(2e-6), settings=replace(FAST, off_floor_resets=0),
                          limits=PulseLimits(3.5, 2.0, 5.5), off_siemens=1e-6,
                          read_lsb_siemens=0.78e-6, read_bias_rel=0.003)
    reads = np.array([[[2.985e-6, 100.4e-6]]])
    for i in range(4 * FAST.average_reads):
        strat.on_read(0, reads[0], t=1.0 + 0.05 * i)
    assert (strat.status[0, 0] == VERIFIED).all()
    assert strat.pulses.sum() == 0


def test_read_noise_comes_from_the_calibration_unless_set():
    assert ProgramSettings().with_read_noise(0.02).read_noise_rel == 0.02
    assert ProgramSettings().with_read_noise(None).read_noise_rel == DEFAULT_READ_NOISE_REL
    assert ProgramSettings(read_noise_rel=0.005).with_read_noise(0.02).read_noise_rel == 0.005
    with pytest.raises(BadInput, match="read_noise_rel"):
        ProgramSettings(read_noise_rel=1.5)


@pytest.mark.slow
def test_off_devices_rest_at_their_floor(emulated_board, tmp_path):
    """Off targets are finished with strongest RESETs: they rest where RESET leaves them (their
    own g_off), not anywhere within the tolerance above the off level, as they do without."""
    spread = {}
    for floor_resets in (2, 0):
        emu = emulated_board(virtual_time=True, arrays=1, rows=16, cols=16, seed=5,
                             settings={**FAST_DEVICES, **EXACT_CHAIN})
        before = four_bit_targets((1, 16, 16), seed=7, lowest=1)  # a deployment programmed before
        levels = np.random.default_rng(8).integers(0, 4, (1, 16, 16))
        targets = np.where(levels == 0, PROFILE.conductance.g_min_siemens, before)  # 1/4 off
        settings = replace(FAST, off_floor_resets=floor_resets)
        with Board.open(emu.port) as board:
            for goal, name in ((before, "before"), (targets, "now")):
                result = program_targets(board, goal, np.ones_like(goal, bool), settings=settings,
                                         off_siemens=PROFILE.conductance.g_min_siemens,
                                         journal=tmp_path / f"{floor_resets}-{name}.jsonl",
                                         **ON_VIRTUAL_TIME)
            limit = board.info.limits.v_reset_max
        devices = emu.state().devices
        off = (levels == 0) & healthy(emu) & (result.status == VERIFIED)
        assert off.sum() >= 40
        # above the floor (a large RESET step's noise can leave a device under its g_off)
        spread[floor_resets] = np.maximum(devices.g_final_siemens - devices.g_off_siemens, 0)[off]
        if floor_resets:
            records = read_journal(tmp_path / "2-now.jsonl")
            for row, col in np.argwhere(off[0])[:10]:
                ops = [(e["op"], e.get("v")) for e in crosspoint_series(records, 0, row, col)
                       if e["op"] != "read"]
                assert ops[-2:] == [("reset", pytest.approx(limit))] * 2
    # at the floor within the RESET step noise (measured: 0.16-0.25 uS at the 90th
    # percentile); without floor RESETs anywhere in the tolerance above the off level (1.2)
    floor_us = np.percentile(spread[2], [50, 90, 100]) * 1e6
    band_us = np.percentile(spread[0], [50, 90, 100]) * 1e6
    assert floor_us[1] < 0.5 and floor_us[2] < 1, (floor_us, band_us)
    assert band_us[1] > 0.8, (floor_us, band_us)


@pytest.mark.slow(seconds=1)
def test_stuck_devices_are_found_and_merged_into_the_defect_map(emulated_board, tmp_path):
    emu = emulated_board(virtual_time=True, arrays=1, rows=16, cols=16, seed=4,
                         settings={**FAST_DEVICES, **EXACT_CHAIN, "defects.stuck_on_fraction": 0.04,
                                   "defects.stuck_off_fraction": 0.04})
    targets = four_bit_targets((1, 16, 16), lowest=1)  # every target is above the off state
    defects = emu.state().devices.defect != HEALTHY
    assert defects.sum() >= 8
    with Board.open(emu.port) as board:
        result = program_targets(board, targets, np.ones_like(targets, bool), settings=FAST, **ON_VIRTUAL_TIME,
                                 off_siemens=PROFILE.conductance.g_min_siemens)
    stuck = result.status == STUCK
    # every stuck device is found, and no healthy device is given up (a stuck-on device whose
    # target is within the tolerance of where it sits counts as programmed)
    g = emu.state().devices.g_final_siemens
    assert np.array_equal(stuck, defects & (np.abs(g - targets) > 2e-6))
    assert sorted(map(tuple, result.report["stuck_devices"])) == sorted(
        tuple(int(x) for x in i) for i in np.argwhere(stuck))
    assert result.report["yield_working"] == 1.0 and result.report["yield_all"] < 1.0
    path = tmp_path / "defects.json"
    geometry = replace(PROFILE.geometry, arrays=1, rows=16, cols=16)
    assert merge_defects(path, result, PROFILE.conductance.g_min_siemens) == int(stuck.sum())
    loaded = load_defects(path, geometry)
    kinds = {(d.array, d.row, d.col): d.kind for d in loaded.stuck}
    truth = emu.state().devices.defect
    for cell, kind in kinds.items():
        assert kind == {1: "stuck_on", 2: "stuck_off"}[int(truth[cell])]
    merge_defects(path, result, PROFILE.conductance.g_min_siemens)  # merging again changes nothing
    assert len(load_defects(path, geometry).stuck) == len(kinds)


def test_death_between_sending_and_journaling_never_pulses_twice(emulated_board, tmp_path):
    emu = emulated_board(virtual_time=True, arrays=1, rows=16, cols=16, seed=6,
                         settings={**FAST_DEVICES, **EXACT_CHAIN})
    targets = four_bit_targets((1, 16, 16), seed=3)
    used = np.ones_like(targets, bool)
    journal = tmp_path / "j.jsonl"
    with Board.open(emu.port) as board:
        with pytest.raises(KeyboardInterrupt):
            program_targets(DiesAfterSending(board, 5), targets, used, settings=FAST, **ON_VIRTUAL_TIME,
                            off_siemens=2e-6, journal=journal)
        records = read_journal(journal)
        pending = [r for r in records if r["type"] == "pulse" and any(pulse_batches(r))][-1]
        assert not any(r["type"] == "sent" and r["it"] == pending["it"] for r in records)
        result = program_targets(board, targets, used, settings=FAST, **ON_VIRTUAL_TIME, off_siemens=2e-6,
                                 journal=journal, resume=True)
        applied = board.status().pulses_applied
    records = read_journal(journal)
    journaled = sum(len(b["idx"]) for r in records if r["type"] == "pulse"
                    for _, b in pulse_batches(r))
    # every pulse the board applied is in the journal once: all but the uncertain record's,
    # and of that record at least the batch that was sent (a SET batch can reach the board
    # and the programmer die before its RESET batch: those devices are never pulsed again)
    uncertain = sum(len(b["idx"]) for _, b in pulse_batches(pending))
    first_sent = len(next(iter(pulse_batches(pending)))[1]["idx"])
    assert journaled == int(result.pulses.sum())
    assert journaled - uncertain + first_sent <= applied <= journaled
    assert result.report["uncertain_pulses"] == uncertain
    assert result.report["sessions"] == 2 and result.report["unfinished"] == 0
    assert result.report["replay_mismatches"] == 0


class ChecksTheJournal:
    """A Board that, before each batch pulse, finds it in the journal on disk: the pulse record of
    this array in the iteration being sent, with exactly the devices of the mask, and no `sent`
    record for it yet."""

    def __init__(self, board: Board, journal: Path) -> None:
        self.board, self.journal, self.checked = board, journal, 0
        self.records: list[dict] = []
        self.read_to = 0  # bytes of the journal parsed into `records`

    def __getattr__(self, name):
        return getattr(self.board, name)

    def _pulse(self, op, method, array, v, gate, mask):
        with open(self.journal, "rb") as f:  # the records written since the last pulse
            f.seek(self.read_to)
            new = f.read()
        whole = new[:new.rfind(b"\n") + 1]
        self.records += [parse_record(line) for line in whole.splitlines()]
        self.read_to += len(whole)
        records = self.records
        it = max(r["it"] for r in records if r["type"] == "pulse")
        mine = [r for r in records if r.get("it") == it and r.get("array") == array]
        pulse = [r for r in mine if r["type"] == "pulse"]
        assert len(pulse) == 1 and pulse[0][op]["idx"] == np.flatnonzero(mask).tolist()
        assert not any(r["type"] == "sent" for r in mine)
        self.checked += 1
        return method(array, v, gate, mask)

    def set_pulses(self, *args):
        return self._pulse("set", self.board.set_pulses, *args)

    def reset_pulses(self, *args):
        return self._pulse("reset", self.board.reset_pulses, *args)


@pytest.mark.slow
def test_every_array_is_journaled_with_one_fsync_before_its_pulses(emulated_board, tmp_path,
                                                                    monkeypatch):
    """An iteration reads and plans every array, journals all their pulse records with one fsync,
    then sends the pulses: two fsyncs an iteration however many arrays pulse (before: one per
    array and iteration, and one more at its end). A resumed replay of the journal (every array's
    reads before its pulses) rebuilds the run exactly."""
    emu = emulated_board(virtual_time=True, arrays=3, rows=8, cols=8, seed=11,
                         settings={**FAST_DEVICES, **EXACT_CHAIN})
    targets = four_bit_targets((3, 8, 8), seed=4)
    used = np.ones_like(targets, bool)
    journal = tmp_path / "j.jsonl"
    syncs = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), fsync(fd))[1])
    with Board.open(emu.port) as board:
        checked = ChecksTheJournal(board, journal)
        result = program_targets(checked, targets, used, settings=FAST, **ON_VIRTUAL_TIME, off_siemens=2e-6,
                                 journal=journal)
        monkeypatch.setattr(os, "fsync", fsync)
        replayed = program_targets(board, targets, used, settings=FAST, **ON_VIRTUAL_TIME, off_siemens=2e-6,
                                   journal=journal, resume=True)
    records = read_journal(journal)
    iterations = result.report["iterations"]
    busy = [it for it in range(1, iterations + 1)
            if sum(r["type"] == "sent" and r["it"] == it for r in records) >= 2]
    assert result.report["unfinished"] == 0 and len(busy) >= 5
    assert checked.checked == sum(1 for r in records for _ in pulse_batches(r))
    # header, session, end and close, and at most two an iteration
    assert len(syncs) <= 2 * iterations + 4
    for it in busy:  # every pulse record of the iteration precedes its first `sent`
        kinds = [r["type"] for r in records
                 if r.get("it") == it and r["type"] in ("pulse", "sent")]
        assert "pulse" not in kinds[kinds.index("sent"):]
    assert replayed.report["replay_mismatches"] == 0 and replayed.report["sessions"] == 2
    assert np.array_equal(replayed.status, result.status)  # a finished run: replayed only
    assert np.array_equal(replayed.pulses, result.pulses)
    assert np.array_equal(replayed.achieved_siemens, result.achieved_siemens, equal_nan=True)


@pytest.mark.slow(seconds=2)
def test_death_while_sending_to_several_arrays_never_pulses_twice(emulated_board, tmp_path):
    """The programmer dies after the first batch of an iteration was sent: every array's pulse
    record of that iteration is already journaled, none acknowledged, so all count once as
    applied and none is sent again (the board applied only the first), and the resumed run
    finishes."""
    emu = emulated_board(virtual_time=True, arrays=3, rows=8, cols=8, seed=13,
                         settings={**FAST_DEVICES, **EXACT_CHAIN})
    targets = four_bit_targets((3, 8, 8), seed=6)
    used = np.ones_like(targets, bool)
    journal = tmp_path / "j.jsonl"
    with Board.open(emu.port) as board:
        dying = DiesAfterSending(board, 1)
        with pytest.raises(KeyboardInterrupt):
            program_targets(dying, targets, used, settings=FAST, **ON_VIRTUAL_TIME, off_siemens=2e-6, journal=journal)
        records = read_journal(journal)
        it = records[-1]["it"]
        reads = {r["array"] for r in records if r["type"] == "read" and r["it"] == it}
        pulses = [r for r in records if r["type"] == "pulse" and r["it"] == it]
        sent = {r["array"] for r in records if r["type"] == "sent" and r["it"] == it}
        assert {r["array"] for r in pulses} == reads and len(reads) == 3
        unsent = [r for r in pulses if r["array"] not in sent and any(pulse_batches(r))]
        assert len(unsent) == 3 and dying.applied == len(next(pulse_batches(unsent[0]))[1]["idx"])
        cut = len(records)
        result = program_targets(board, targets, used, settings=FAST, **ON_VIRTUAL_TIME, off_siemens=2e-6,
                                 journal=journal, resume=True)
        applied = board.status().pulses_applied
    after = read_journal(journal)[cut:]
    resumed = sum(len(b["idx"]) for r in after for _, b in pulse_batches(r))
    assert applied == dying.applied + resumed
    assert result.report["uncertain_pulses"] == sum(len(b["idx"]) for r in unsent
                                                    for _, b in pulse_batches(r))
    assert result.report["sessions"] == 2 and result.report["unfinished"] == 0
    assert result.report["replay_mismatches"] == 0


def test_link_faults_change_nothing(emulated_board):
    """With lost and corrupted frames the same run happens: the same pulses, the same devices.
    (Relaxation off and no delays, so that the run does not depend on timing.)"""
    steady = {**EXACT_CHAIN, **STILL}
    settings = ProgramSettings(settle_s=0, settle_small_s=0, verify_delay_s=0, verify_delay_small_s=0,
                        min_iteration_s=0, verify_reads=4)
    targets = four_bit_targets((1, 8, 8), seed=5)
    runs = []
    for faults in ({}, {"drop_rate": 0.05, "corrupt_rate": 0.05}):
        emu = emulated_board(arrays=1, rows=8, cols=8, seed=8, settings=steady, **faults)
        with Board.open(emu.port, timeout_s=0.05, retries=6) as board:
            result = program_targets(board, targets, np.ones_like(targets, bool),
                                     settings=settings, off_siemens=2e-6)
            status = board.status()
        devices = emu.state().devices
        runs.append((result, status, devices))
    (clean, clean_status, clean_devices), (faulty, faulty_status, faulty_devices) = runs
    assert faulty_status.bad_frames + faulty_status.replays > 0  # the faults did happen
    assert faulty.report["yield_working"] == clean.report["yield_working"] == 1.0
    assert np.array_equal(faulty.pulses, clean.pulses)
    assert faulty_status.pulses_applied == clean_status.pulses_applied == int(clean.pulses.sum())
    assert np.array_equal(faulty_devices.pulses, clean_devices.pulses)
    assert np.array_equal(faulty_devices.g_final_siemens, clean_devices.g_final_siemens)


def test_protocol_versions_1_and_2_program_alike(tmp_path):
    """A board that speaks only protocol 1 (whole-array pulses and reads) and one that speaks 2
    (frames name the pulsed devices only, reads ask for the live devices only) see the same
    run: the same pulses, the same devices, the same report, for a fraction of the bytes.
    (Exact reads, no relaxation, no delays: the run does not depend on timing.)"""
    settings = ProgramSettings(settle_s=0, settle_small_s=0, verify_delay_s=0, verify_delay_small_s=0,
                        min_iteration_s=0, verify_reads=4)
    targets = four_bit_targets((1, 16, 16), seed=5)
    runs = {}
    for version in (1, 2):
        state = tmp_path / f"v{version}.npz"
        url = emu_url(state, 8, arrays=1, rows=16, cols=16, **NOISELESS, **STILL,
                      **{"firmware.protocol_version": version})
        with Board.open(url) as board:
            result = program_targets(board, targets, np.ones_like(targets, bool),
                                     settings=settings, off_siemens=2e-6)
            moved = board.stats.bytes_sent + board.stats.bytes_received
            applied = board.status().pulses_applied
        runs[version] = (result, moved, applied, load_state(state).devices)
    (v1, bytes_v1, applied_v1, devices_v1), (v2, bytes_v2, applied_v2, devices_v2) = runs[1], runs[2]
    assert v1.report["iterations"] > 5 and v1.report["yield_working"] == 1.0
    for key in ("within_tolerance", "mean_abs_error_siemens", "p95_abs_error_siemens",
                "pulses_total", "iterations", "stuck_devices"):
        assert v1.report[key] == v2.report[key], key
    assert v1.report["frames"] == v2.report["frames"]  # each refused one version-3 IDENTIFY
    assert np.array_equal(v1.pulses, v2.pulses) and applied_v1 == applied_v2 == v1.pulses.sum()
    assert np.array_equal(devices_v1.g_final_siemens, devices_v2.g_final_siemens)
    assert bytes_v2 < bytes_v1 / 4


def _programming_in_background(emulated_board, tmp_path, seed: int, stderr=subprocess.DEVNULL,
                               ignoring=()):
    """`imssa-hw program` of a small deployment started in its own process on a fresh emulated
    board, `ignoring` those signals (as `nohup` ignores SIGHUP): (process, emulator, journal,
    the command's arguments)."""
    deploy = make_deployment(tmp_path)
    emu = emulated_board(arrays=2, rows=16, cols=16, seed=seed, settings=FAST_DEVICES)
    journal = tmp_path / "journal.jsonl"
    args = [str(deploy), "--port", emu.port, "--journal", str(journal), *FAST_CLI,
            "--out", str(tmp_path / "out"), "--no-plots"]
    process = subprocess.Popen([sys.executable, "-m", "imssa_hw.cli.main", "program", *args],
                               stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                               preexec_fn=lambda: _as_from_a_terminal(ignoring))
    return process, emu, journal, args


def _as_from_a_terminal(ignoring=()) -> None:
    """SIGINT and SIGHUP at their defaults, as for a command typed at a terminal (a test run in
    the background may have inherited them ignored, and a program keeps an ignored signal),
    but the signals `ignoring` ignored."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN if sig in ignoring else signal.SIG_DFL)


@pytest.mark.slow
def test_kill_and_resume_never_repulses_verified_devices(emulated_board, tmp_path):
    process, emu, journal, args = _programming_in_background(emulated_board, tmp_path, 9)
    deadline = time.monotonic() + 60
    verified = 0
    while time.monotonic() < deadline and verified < 40 and process.poll() is None:
        time.sleep(0.05)
        if journal.exists():
            text = journal.read_text()
            verified = sum(len(json.loads(line)["status"].get("verified", []))
                           for line in text.splitlines()[:-1] if '"type":"pulse"' in line)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert verified >= 40, "the programmer did not get far enough before the kill"
    before = read_journal(journal)
    cut = len(before)
    done_cells = set()
    for r in before:
        if r["type"] == "pulse":
            done_cells |= {(r["array"], i) for i in r["status"].get("verified", [])}
    assert done_cells
    pulses_at_kill = emu.state().devices.pulses.copy()
    with open(journal, "ab") as f:  # as if killed while writing a record
        f.write(b'{"type":"read","session":1,"it":')
    resumed = run_cli("program", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{journal}: cut back a torn last record (" in resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["sessions"] == 2 and report["unfinished"] == 0
    assert report["yield_working"] >= 0.99
    after = read_journal(journal)
    assert after[:cut] == before[:cut] or len(after) > cut
    for r in after[cut:]:
        for _, batch in pulse_batches(r):
            assert not done_cells & {(r["array"], i) for i in batch["idx"]}
    pulses_now = emu.state().devices.pulses
    cols = 16
    for a, i in done_cells:
        assert pulses_now[a, i // cols, i % cols] == pulses_at_kill[a, i // cols, i % cols]
    assert (tmp_path / "out" / "program.json").exists()
    assert after[-1]["type"] == "end"
    exported = CliRunner().invoke(cli, ["journal", "export", str(journal), "--out",
                                        str(tmp_path / "logs")])
    assert exported.exit_code == 0 and "torn" not in exported.output, exported.output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_ends_programming_cleanly_and_says_how_to_resume(emulated_board, tmp_path, sig):
    """SIGTERM, SIGHUP or Ctrl-C mid-run: one line naming the signal, what was kept and how to
    continue, exit 128 + the signal; the journal is whole and --resume finishes the run."""
    process, _, journal, args = _programming_in_background(emulated_board, tmp_path, 11,
                                                           stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and (
            not journal.exists() or journal.read_text().count('"type":"pulse"') < 3):
        time.sleep(0.05)
    process.send_signal(sig)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 128 + sig.value, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"Error: interrupted ({sig.name}): every pulse sent is in the journal {journal}; run the "
        f"same command with --resume to continue")
    assert journal.read_bytes().endswith(b"\n")  # no torn record
    resumed = run_cli("program", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["unfinished"] == 0


@pytest.mark.slow
def test_a_signal_ignored_at_start_stays_ignored(emulated_board, tmp_path):
    """Under `nohup` (SIGHUP ignored) a hangup does not end the run."""
    process, _, journal, _ = _programming_in_background(emulated_board, tmp_path, 12,
                                                        ignoring=(signal.SIGHUP,))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and (
            not journal.exists() or journal.read_text().count('"type":"pulse"') < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=120) == 0
    assert read_journal(journal)[-1]["type"] == "end"


@pytest.mark.slow
def test_program_command_end_to_end(emulated_board, tmp_path):
    deploy = make_deployment(tmp_path)
    emu = emulated_board(arrays=2, rows=16, cols=16, seed=10, settings=FAST_DEVICES)
    report = tmp_path / "report.json"
    program = lambda *args: CliRunner().invoke(cli, ["program", str(deploy), "--port", emu.port,
                                                     *args])
    nothing = program("--resume")
    assert nothing.exit_code == 2 and "journal not found" in nothing.output
    # the run in a process of its own, as a user starts it
    done = run_cli("program", str(deploy), "--port", emu.port, *FAST_CLI, "--report", str(report))
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    for key in ("yield_working", "yield_all", "mean_pulses_per_device", "p95_pulses_per_device",
                "stuck_devices", "iterations", "frames", "wall_time_s"):
        assert key in data
    assert data["yield_working"] >= 0.99 and data["devices"] == 196
    # the deployment's tolerance (its profile's tolerance_us) unless --tolerance overrides it
    assert data["tolerance_from"] == "deployment" and data["tolerance_siemens"] == pytest.approx(2e-6)
    out = deploy / "program"
    for name in ("journal.jsonl", "program.json", "target_vs_achieved.png", "error_histogram.png",
                 "yield.png"):
        assert (out / name).is_file(), name
    if data["stuck_devices"] or data["stuck_unused"]:
        assert (deploy / "defects.json").is_file()
    # a second run refuses to overwrite the journal; --resume of a finished run is a no-op
    again = program(*FAST_CLI)
    assert again.exit_code == 2 and "--resume" in again.output
    finished = program(*FAST_CLI, "--resume", "--no-plots")
    assert finished.exit_code == 0, finished.output
    assert json.loads(finished.stdout)["iterations"] == data["iterations"]
    assert not any((out / name).exists() for name in PLOTS)  # --no-plots: none left over


def test_bad_input_is_one_line_and_exit_2(emulated_board, tmp_path):
    deploy = make_deployment(tmp_path)
    emu = emulated_board()  # 2 arrays of 8x8: not the deployment's board
    runner = CliRunner()
    cases = [
        (["program", str(tmp_path / "missing"), "--port", emu.port], "not a deploy directory"),
        (["program", str(deploy), "--port", emu.port], "2 arrays of 16x16"),
        (["program", str(deploy), "--port", emu.port, "--tolerance", "2"], "--tolerance"),
        (["program", str(deploy), "--port", emu.port, "--tolerance", "-1%"], "--tolerance"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (message, result.output)
    done = run_cli("program", str(deploy), "--port", emu.port)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "16x16" in lines[0]


def test_the_deployment_gives_the_tolerance_and_the_board_is_checked_once(emulated_board, tmp_path,
                                                                          monkeypatch):
    """`program_deployment` programs within the deployment's tolerance unless another is given,
    and `imssa-hw program` checks the board against the deployment once (programming itself is
    stopped before its first read)."""
    from imssa_hw.compiler import Deployment, load_deployment
    from imssa_hw.programming import program_deployment, runner

    deploy = make_deployment(tmp_path)
    data = json.loads((deploy / "deploy.json").read_text())
    data["profile"]["conductance"]["tolerance_us"] = 3.0  # not the 2 uS of the shipped profiles
    (deploy / "deploy.json").write_text(json.dumps(data))
    emu = emulated_board(arrays=2, rows=16, cols=16)
    checks, tolerances = [], []
    check = Deployment.check_board
    monkeypatch.setattr(Deployment, "check_board",
                        lambda dep, info: checks.append(info.board_id) or check(dep, info))

    def stop(board, targets_siemens, used, *, tolerance, **kwargs):
        tolerances.append(tolerance)
        raise BadInput("stopped before the first read")

    monkeypatch.setattr(runner, "program_targets", stop)
    with Board.open(emu.port) as board:
        dep = load_deployment(deploy)
        for tolerance in (None, "5%"):
            with pytest.raises(BadInput, match="stopped"):
                program_deployment(board, dep, tolerance=tolerance)
    for extra in ([], ["--tolerance", "4uS"]):
        result = CliRunner().invoke(cli, ["program", str(deploy), "--port", emu.port, *extra])
        assert result.exit_code == 2 and "stopped before the first read" in result.output
    assert len(checks) == 4  # once a run
    assert tolerances == [Tolerance(abs_siemens=3e-6), Tolerance(abs_siemens=0.0, rel=0.05),
                          Tolerance(abs_siemens=3e-6), Tolerance(abs_siemens=4e-6)]


@pytest.mark.slow(seconds=8)
def test_refresh_rewrites_only_drifted_devices(tmp_path, emulated_board):
    """Program, let a (strongly drifting) board sit for a day, refresh: only devices out of
    tolerance are pulsed, a verified device never again, and the yield is back."""
    deploy = make_deployment(tmp_path)
    emu = emulated_board(arrays=2, rows=16, cols=16, seed=12,
                         settings={**FAST_DEVICES, **EXACT_CHAIN,
                                   "retention.sigma_min_siemens": 3e-6,
                                   "retention.sigma_max_siemens": 6e-6})
    program = lambda *args: CliRunner().invoke(cli, ["program", str(deploy), "--port", emu.port,
                                                     *args])
    early = program("--refresh")
    assert early.exit_code == 2 and "run `imssa-hw program` first" in early.output
    done = program(*FAST_CLI, "--no-plots")
    assert done.exit_code == 0, done.output
    emu.age(86400)
    dep_targets = np.load(deploy / "targets.npz")
    targets, used = dep_targets["targets_siemens"], dep_targets["used"]
    truth = emu.truth_siemens()
    pulses_before = emu.state().devices.pulses.copy()
    error = np.abs(truth - targets)
    tol = 3e-6  # wider than the deployment's 2 uS: an override, recorded
    fixed = program(*FAST_CLI, "--refresh", "--no-plots", "--tolerance", "3uS")
    assert fixed.exit_code == 0, fixed.output
    pulses = emu.state().devices.pulses - pulses_before
    report = json.loads((deploy / "program" / "refresh" / "refresh.json").read_text())
    assert report["strategy"] == "refresh" and report["yield_working"] >= 0.99
    assert report["tolerance_from"] == "--tolerance" and report["tolerance_siemens"] == pytest.approx(tol)
    drifted = used & (error > 1.5 * tol) & healthy(emu)
    kept = used & (error < 0.5 * tol)
    assert drifted.sum() >= 10 and kept.sum() >= 10
    assert (pulses[drifted] > 0).mean() >= 0.95
    assert (pulses[kept] == 0).mean() >= 0.95
    assert report["rewritten_devices"] == int(((pulses > 0) & used).sum())
    verified: set[tuple[int, int]] = set()
    for r in read_journal(deploy / "program" / "refresh" / "journal.jsonl"):
        if r["type"] != "pulse":
            continue
        for _, batch in pulse_batches(r):
            assert not verified & {(r["array"], i) for i in batch["idx"]}
        verified |= {(r["array"], i) for i in r["status"].get("verified", [])}
    # a second refresh starts a new journal; the finished one is kept aside
    again = program(*FAST_CLI, "--refresh", "--no-plots")
    assert again.exit_code == 0, again.output
    assert (deploy / "program" / "refresh-1" / "journal.jsonl").is_file()
