"""The programming journal as a database would keep it: checksums, a torn last record cut back,
one writer at a time, and a resume that re-checks the board (docs/programming.md).

Runs on small still, noiseless emulated boards without delays, so that they take seconds and
do not depend on timing.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.drivers.board import Board
from imssa_hw.errors import BadInput
from imssa_hw.programming import ProgramSettings, program_targets
from imssa_hw.programming.export import export_journal
from imssa_hw.programming.journal import (FORMAT, JournalWriter, encode_record, pulse_batches,
                                          read_journal)
from imssa_hw.programming.strategy import STUCK, VERIFIED
from support.boards import NOISELESS, ON_VIRTUAL_TIME, STILL, healthy
from support.programming import PROFILE, DiesAfterSending, four_bit_targets, make_deployment

QUICK = ProgramSettings(settle_s=0, settle_small_s=0, verify_delay_s=0, verify_delay_small_s=0,
                        min_iteration_s=0, verify_reads=4)
"""No waits: on a still board the run does not depend on timing."""
OFF = PROFILE.conductance.g_min_siemens
HEADER = {"type": "header", "format": FORMAT, "version": 2, "shape": [1, 2, 2]}
RECORDS = [HEADER, {"type": "session", "n": 1, "t": 1.0, "resume": False},
           {"type": "read", "array": 0, "it": 1, "t": 2.0, "idx": None, "g_us": [1.5, 2, 3, 4]},
           {"type": "iter", "it": 1, "t": 3.0}]


def write_records(path: Path, records: list[dict]) -> Path:
    with JournalWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_records_carry_a_checksum(tmp_path):
    path = write_records(tmp_path / "j.jsonl", RECORDS)
    assert all(b'"crc":"' in line for line in lines(path))
    assert read_journal(path) == RECORDS  # `crc` is checked and taken off
    # version 1 journals (no checksums) still read
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps({**r, "version": 1} if r is HEADER else r) + "\n"
                           for r in RECORDS))
    assert read_journal(old)[1:] == RECORDS[1:]


@pytest.mark.parametrize("line", [2, 3])
def test_a_bad_record_in_the_middle_is_an_error_naming_its_line(tmp_path, line):
    """An altered value (still valid JSON: only the checksum tells), or half a record with the
    next one appended to it (what appending to a torn tail left before)."""
    path = write_records(tmp_path / "j.jsonl", RECORDS)
    data = lines(path)
    if line == 3:
        data[2] = data[2].replace(b"1.5", b"1.6")
        message = "checksum does not match"
    else:
        data[1] = data[1][:20] + data[2]
        message = "not a journal record"
    path.write_bytes(b"".join(data))
    with pytest.raises(BadInput, match=f"j.jsonl:{line}: {message}"):
        read_journal(path)
    with JournalWriter(path, note=pytest.fail):  # nothing to cut: the tail is sound
        pass


def test_a_bad_checksum_on_the_last_line_is_a_torn_record(tmp_path):
    path = write_records(tmp_path / "j.jsonl", RECORDS)
    sound = path.read_bytes()
    path.write_bytes(sound.replace(b'"t":3.0', b'"t":3.5'))
    notes: list[str] = []
    assert read_journal(path, notes.append) == RECORDS[:-1]
    last = len(lines(path)[-1])
    assert notes == [f"{path}:4: ignoring a torn last record ({last} bytes, checksum does not "
                     f"match)"]
    JournalWriter(path, notes.append).close()
    assert path.read_bytes() == sound[:-last] and len(notes) == 2
    assert "cut back a torn last record" in notes[1]


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "j.jsonl"
    with JournalWriter(path):
        with pytest.raises(BadInput, match="is in use: another run is writing it"):
            JournalWriter(path)
    JournalWriter(path).close()  # released


def crash(board, targets, journal: Path, die_on: int) -> DiesAfterSending:
    """Program until the `die_on`-th pulse command has reached the board, then die (the pulse
    is journaled, its `sent` is not)."""
    dying = DiesAfterSending(board, die_on)
    with pytest.raises(KeyboardInterrupt):
        program_targets(dying, targets, np.ones_like(targets, bool), settings=QUICK, **ON_VIRTUAL_TIME,
                        off_siemens=OFF, journal=journal)
    return dying


def journaled_pulses(records: list[dict]) -> int:
    return sum(len(b["idx"]) for r in records for _, b in pulse_batches(r))


TORN = {
    "one byte": lambda line: line[:1],
    "half a record": lambda line: line[:len(line) // 2],
    "no newline": lambda line: line[:-1],
    "mid UTF-8": lambda line: line[:len(line) // 2] + "\u00b5".encode()[:1],
    "bad checksum": lambda line: line[:-4] + (b"1" if line[-4:-3] == b"0" else b"0") + line[-3:],
}


@pytest.mark.parametrize("cut", list(TORN))
def test_resume_after_a_torn_last_record(emulated_board, tmp_path, cut):
    """A crash mid-write leaves part of a record: resume cuts it back (one line says so) and
    finishes; a second resume and the export still work, and the board got every journaled
    pulse once."""
    emu = emulated_board(virtual_time=True, arrays=1, rows=8, cols=8, seed=3, settings={**NOISELESS, **STILL})
    targets = four_bit_targets((1, 8, 8), seed=2)
    journal = tmp_path / "journal.jsonl"
    with Board.open(emu.port) as board:
        dying = crash(board, targets, journal, die_on=4)
        cut_at = len(read_journal(journal))
        last = lines(journal)[-1]  # a pulse record: the torn one is a copy of it, half-written
        with open(journal, "ab") as f:
            f.write(TORN[cut](last))
        export = CliRunner().invoke(cli, ["journal", "export", str(journal), "--out",
                                          str(tmp_path / "torn")])
        assert export.exit_code == 0, export.output
        assert f"{journal}:{cut_at + 1}: ignoring a torn last record" in export.output
        notes: list[str] = []
        result = program_targets(board, targets, np.ones_like(targets, bool), settings=QUICK, **ON_VIRTUAL_TIME,
                                 off_siemens=OFF, journal=journal, resume=True, note=notes.append)
        again = program_targets(board, targets, np.ones_like(targets, bool), settings=QUICK, **ON_VIRTUAL_TIME,
                                off_siemens=OFF, journal=journal, resume=True,
                                note=notes.append)
        applied = board.status().pulses_applied
    assert len(notes) == 1 and "cut back a torn last record" in notes[0], notes
    records = read_journal(journal, pytest.fail)
    assert result.report["unfinished"] == 0 and result.report["sessions"] == 2
    assert again.report["sessions"] == 3 and again.report["replay_mismatches"] == 0
    assert again.report["resume_reprogrammed"] == 0
    assert again.report["iterations"] == result.report["iterations"]
    assert applied == dying.applied + journaled_pulses(records[cut_at:])
    assert export_journal(journal, tmp_path / "log.h5", note=pytest.fail)[0].is_file()


class FillsTheDisk(JournalWriter):
    """A journal whose disk is full after `room` records: half the next one reaches it."""

    room = 0

    def write(self, record, sync=False):
        FillsTheDisk.room -= 1
        if FillsTheDisk.room < 0:
            line = encode_record(record)
            self._file.write(line[:len(line) // 2])
            self._file.flush()
            self._guard(full_disk)
        super().write(record, sync)


def full_disk() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("room", [7, 9, 24])  # a pulse, an iter, a sent record
def test_a_full_disk_is_one_line_and_resume_cuts_its_half_record(emulated_board, tmp_path,
                                                                  monkeypatch, room):
    emu = emulated_board(virtual_time=True, arrays=1, rows=8, cols=8, seed=3, settings={**NOISELESS, **STILL})
    targets = four_bit_targets((1, 8, 8), seed=2)
    used = np.ones_like(targets, bool)
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setattr(FillsTheDisk, "room", room)
    with Board.open(emu.port) as board:
        with monkeypatch.context() as m:
            m.setattr("imssa_hw.programming.runner.JournalWriter", FillsTheDisk)
            with pytest.raises(BadInput, match=f"cannot write the journal {journal}: No space "
                                               f"left on device; the journal .* --resume"):
                program_targets(board, targets, used, settings=QUICK, **ON_VIRTUAL_TIME, off_siemens=OFF,
                                journal=journal)
        assert not journal.read_bytes().endswith(b"\n")
        notes: list[str] = []
        result = program_targets(board, targets, used, settings=QUICK, **ON_VIRTUAL_TIME, off_siemens=OFF,
                                 journal=journal, resume=True, note=notes.append)
        applied = board.status().pulses_applied
    assert len(notes) == 1 and "cut back a torn last record" in notes[0]
    assert result.report["unfinished"] == 0 and result.report["replay_mismatches"] == 0
    assert applied == journaled_pulses(read_journal(journal, pytest.fail))


def test_resume_reprograms_what_the_board_lost(emulated_board, tmp_path):
    """Between the crash and the resume every device is RESET (a calibration in between): the
    resumed run re-reads every device, programs the verified ones that lost their state again
    (no journaled pulse is sent twice), and its report is what the board holds."""
    emu = emulated_board(virtual_time=True, arrays=2, rows=8, cols=8, seed=4, settings={**NOISELESS, **STILL})
    targets = four_bit_targets((2, 8, 8), seed=5)
    used = np.ones_like(targets, bool)
    journal = tmp_path / "journal.jsonl"
    with Board.open(emu.port) as board:
        dying = crash(board, targets, journal, die_on=30)
        before = read_journal(journal)
        verified = np.zeros(targets.shape, bool)
        for r in before:
            if r["type"] == "pulse":
                idx = r["status"].get("verified", [])
                verified[r["array"]].flat[idx] = True
        limits = board.info.limits
        everything = np.ones(targets.shape[1:], bool)
        for a in range(2):
            for _ in range(3):
                board.reset_pulses(a, limits.v_reset_max, limits.v_gate_max, everything)
        lost = verified & (targets > OFF + 2e-6)  # the off targets survive a RESET
        assert lost.sum() >= 10
        result = program_targets(board, targets, used, settings=QUICK, **ON_VIRTUAL_TIME, off_siemens=OFF,
                                 journal=journal, resume=True)
        again = program_targets(board, targets, used, settings=QUICK, **ON_VIRTUAL_TIME, off_siemens=OFF,
                                journal=journal, resume=True)
        applied = board.status().pulses_applied
    r = result.report
    assert r["resume_reprogrammed"] == lost.sum()
    assert r["resume_reverified"] == (verified & ~lost).sum()
    assert r["unfinished"] == 0 and r["yield_working"] == 1.0
    # every journaled pulse reached the board once (the RESETs were ours)
    after = read_journal(journal)[len(before):]
    assert applied == dying.applied + 6 * targets[0].size + journaled_pulses(after)
    assert all(b["idx"] for r_ in after for _, b in pulse_batches(r_))
    # the report is what the board holds
    truth = emu.truth_siemens()
    ok = healthy(emu) & (result.status == VERIFIED)
    assert ok.sum() >= 120 and (ok | (result.status == STUCK)).all()
    assert np.abs(result.achieved_siemens - truth)[ok].max() <= 2e-6
    error = truth - targets
    assert (error[ok] <= 2e-6).all() and (error[ok & (targets > OFF)] >= -2e-6).all()
    # a second resume of the finished run replays the recheck exactly and touches nothing
    assert again.report["replay_mismatches"] == 0
    assert again.report["resume_reprogrammed"] == r["resume_reprogrammed"]
    assert again.report["resume_reverified"] == r["resume_reverified"]
    assert np.array_equal(again.status, result.status)
    assert np.array_equal(again.pulses, result.pulses)


def test_a_second_program_on_a_journal_in_use_is_one_line(emulated_board, tmp_path):
    deploy = make_deployment(tmp_path)
    emu = emulated_board(virtual_time=True, arrays=2, rows=16, cols=16, seed=10)
    journal = deploy / "program" / "journal.jsonl"
    with JournalWriter(journal) as holder:
        holder.write({"type": "header", "format": FORMAT, "version": 2}, sync=True)
        result = CliRunner().invoke(cli, ["program", str(deploy), "--port", emu.port,
                                          "--resume"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"Error: journal {journal} is in use: another run is writing it (wait for it to end or "
        f"stop it; one run per journal)"]


def test_a_resume_needs_the_run_s_targets_and_board(emulated_board, tmp_path):
    """The journal's header names the run (targets, settings, ...) and the board, as its
    identify reply describes it; a resume with another of them is refused in one line that
    says which, and nothing is pulsed."""
    targets = four_bit_targets((1, 4, 4), seed=2)
    journal = tmp_path / "journal.jsonl"
    settings = {**NOISELESS, **STILL}

    def resume(emu, run_targets: np.ndarray) -> str:
        with Board.open(emu.port) as board:
            before = board.status().pulses_applied
            with pytest.raises(BadInput) as refused:
                program_targets(board, run_targets, np.ones_like(targets, bool), settings=QUICK, **ON_VIRTUAL_TIME,
                                off_siemens=OFF, journal=journal, resume=True)
            assert board.status().pulses_applied == before
        return str(refused.value)

    emu = emulated_board(virtual_time=True, arrays=1, rows=4, cols=4, seed=3, settings=settings)
    with Board.open(emu.port) as board:
        program_targets(board, targets, np.ones_like(targets, bool), settings=QUICK, **ON_VIRTUAL_TIME,
                        off_siemens=OFF, journal=journal)
    header = read_journal(journal)[0]
    assert header["board"]["spec"]["read"]["adc_bits"] == 9
    assert header["board"]["spec"]["board"] == {"arrays": 1, "rows": 4, "cols": 4, "cell": "1T1R"}
    assert "belongs to another run: its targets" in resume(emu, targets[:, ::-1])
    finer = emulated_board(virtual_time=True, arrays=1, rows=4, cols=4, seed=3,
                           settings={**settings, "read.adc_bits": 10, "limits.v_gate_max": 5.0})
    assert resume(finer, targets) == (
        f"journal {journal} was written when board EMU-DPE-0001 described itself otherwise "
        f"([limits] v_gate_max, [read] adc_bits changed): start a new run")
    other = emulated_board(virtual_time=True, arrays=1, rows=4, cols=4, seed=3,
                           settings={**settings, "firmware.board_id": "EMU-OTHER"})
    assert resume(other, targets) == (f"journal {journal} was written for board EMU-DPE-0001, "
                                      f"this is EMU-OTHER")
