"""The board driver over a real pty, against the emulator in its own process."""

from __future__ import annotations

import os
import threading
import time
import tty

import numpy as np
import pytest

from imssa_hw.drivers.board import Board
from imssa_hw.drivers.errors import (BoardError, BoardSilent, LinkError, PortBusy, PortMissing,
                                     Unsupported, VersionMismatch, VoltageLimitError)
from imssa_hw.drivers.framing import Frame, FrameDecoder
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import ErrorCode, pack_error
from imssa_hw.errors import BadInput

from support.boards import NEEDS_PTY, NOISELESS, STILL, emu_url


def test_identify_and_status(module_board):
    with Board.open(module_board.port) as board:
        info = board.identify()
        assert (info.arrays, info.rows, info.cols, info.protocol_version) == (2, 8, 8, 3)
        assert board.protocol == 3
        assert info.limits.v_set_max == 3.5 and info.adc_bits == 9
        assert board.info == info
        status = board.status()
        assert status.config == board.config and status.frames_received >= 2


def test_configure_rounds_ranges_up_and_refuses_limits(emulated_board):
    with Board.open(emulated_board().port) as board:
        config = board.configure(v_read_v=0.1, read_range_a=30e-6, pulse_width_s=1e-7)
        assert (config.v_read_v, config.read_range_a, config.pulse_width_s) == (0.1, 40e-6, 1e-7)
        assert board.status().config == config
        with pytest.raises(VoltageLimitError):
            board.configure(v_read_v=0.5)
        with pytest.raises(VoltageLimitError):
            board.configure(pulse_width_s=1.0)
        with pytest.raises(ValueError):
            board.configure(vmm_range_a=1.0)
        assert board.status().config == config


def test_pulses_and_reads_follow_the_devices(emulated_board):
    emu = emulated_board()
    with Board.open(emu.port) as board:
        mask = np.zeros((8, 8), bool)
        mask[2:5] = True
        assert board.set_pulses(0, 3.0, 1.0, mask) == 24
        truth = emu.truth_siemens()
        assert (truth[0][mask] > 40e-6).all() and (truth[0][~mask] < 3e-6).all()
        read = board.read_array(0)
        assert read.shape == (8, 8)
        # within the read chain's errors: gain ~3 %, offset ~1 LSB, noise 1 %
        assert np.abs(read[mask] - truth[0][mask]).max() < 0.15 * truth[0][mask].max()
        assert abs(board.read_device(0, 3, 4) - truth[0, 3, 4]) < 0.15 * truth[0, 3, 4]
        before = emu.truth_siemens()[0][mask]
        assert board.reset_pulses(0, 1.2, 5.0, mask) == 24
        assert (emu.truth_siemens()[0][mask] < before).all()


def test_vmm_is_the_column_currents(emulated_board):
    emu = emulated_board(settings=NOISELESS)
    with Board.open(emu.port) as board:
        board.set_pulses(1, 3.0, 0.9)
        v = np.linspace(-0.2, 0.2, 8)
        currents = board.vmm(1, v)
        lsb_i = board.info.adc_lsb_a(board.config.vmm_range_a)
        v_dac = np.round(v / board.info.dac_lsb_v) * board.info.dac_lsb_v
        expected = v_dac @ emu.truth_siemens()[1]
        assert currents.shape == (8,)
        assert np.abs(currents - expected).max() <= lsb_i * 0.51
        with pytest.raises(VoltageLimitError):
            board.vmm(1, np.full(8, 0.31))
        with pytest.raises(ValueError):
            board.vmm(1, np.zeros(7))


def loop_programs() -> list[LoopProgram]:
    """A 2-state recurrence on array 0 and a read-out on array 1: rows 0-1 take the inputs,
    rows 2-3 the fed-back outputs."""
    return [LoopProgram(0, [0, 1, -1, -1, -1, -1, -1, -1], [0.1, 0.05, 0, 0, 0, 0, 0, 0],
                        [-1, -1, 0, 1, -1, -1, -1, -1], [0, 0, 1e4, 5e3, 0, 0, 0, 0],
                        out_plus=[0, 2], out_minus=[1, -1]),
            LoopProgram(1, [0, -1, -1, -1, -1, -1, -1, -1], [0.2, 0, 0, 0, 0, 0, 0, 0],
                        [-1] * 8, [0] * 8, out_plus=[3], out_minus=[4])]


def test_on_board_loop_matches_the_host_loop(emulated_board):
    emu = emulated_board(settings={**NOISELESS, **STILL})
    with Board.open(emu.port) as board:
        rng = np.random.default_rng(0)
        board.set_pulses(0, 3.0, rng.uniform(0.5, 1.3, (8, 8)))
        board.set_pulses(1, 3.0, rng.uniform(0.5, 1.3, (8, 8)))
        board.configure(vmm_range_a=40e-6)
        board.load_program(loop_programs())
        assert (board.n_inputs, board.n_outputs) == (2, 3)
        inputs = rng.uniform(-1, 1, (40, 2))
        frames = board.frames_sent
        on_board = board.run_sequence(inputs)
        assert board.frames_sent - frames == 1
        host = board.run_sequence_host(inputs)
        assert board.frames_sent - frames == 1 + 40 * 2
        assert on_board.shape == host.shape == (40, 3)
        lsb = board.info.adc_lsb_a(board.config.vmm_range_a)
        assert np.abs(on_board).max() > 20 * lsb  # the loop does something
        assert np.array_equal(np.rint(on_board / lsb), np.rint(host / lsb))  # the same ADC codes
        batch = board.run_sequence(np.stack([inputs, inputs[::-1], inputs]))
        assert batch.shape == (3, 40, 3) and np.array_equal(batch[0], on_board)
        assert np.array_equal(batch[2], on_board)


def test_sequence_frames_do_not_grow_with_length(emulated_board):
    with Board.open(emulated_board().port) as board:
        board.load_program(loop_programs())
        for steps in (10, 3000):
            frames = board.frames_sent
            assert board.run_sequence(np.zeros((steps, 2))).shape == (steps, 3)
            assert board.frames_sent - frames == 1


def test_route_smu_and_reset(emulated_board):
    with Board.open(emulated_board().port) as board:
        board.configure(v_read_v=0.1)
        board.load_program(loop_programs())
        board.route_smu(1, 2, 3)
        status = board.status()
        assert status.smu_route == (1, 2, 3) and status.programs == 2
        epoch = status.epoch
        board.reset()
        status = board.status()
        assert status.epoch != epoch and status.smu_route is None and status.programs == 0
        assert board.config.v_read_v == status.config.v_read_v == 0.2
        board.route_smu(None)
        with pytest.raises(BoardError) as caught:
            board.route_smu(2, 0, 0)
        assert caught.value.code == ErrorCode.BAD_ARGUMENT


def test_board_errors_are_typed(module_board):
    with Board.open(module_board.port) as board:
        with pytest.raises(BoardError) as caught:
            board.read_array(5)
        assert caught.value.code == ErrorCode.BAD_ARGUMENT and "array 5" in str(caught.value)
        board.reset()
        with pytest.raises(BoardError, match="load a loop program"):
            board.run_sequence(np.zeros((3, 1)))


def test_socket_url(module_board):
    with Board.open(module_board.tcp_url) as board:
        assert board.info.rows == 8
        assert board.read_array(0).shape == (8, 8)


def test_missing_port():
    with pytest.raises(PortMissing) as caught:
        Board.open("/dev/imssa-no-such-port")
    assert isinstance(caught.value, BadInput)
    with pytest.raises(PortMissing):
        Board.open("socket://127.0.0.1:1")


@NEEDS_PTY
def test_exclusive_open(module_board):
    with Board.open(module_board.port):
        with pytest.raises(PortBusy):
            Board.open(module_board.port)
    with Board.open(module_board.port) as board:  # released on close
        assert board.info.cols == 8


@NEEDS_PTY
def test_silent_board_times_out():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        started = time.monotonic()
        with pytest.raises(BoardSilent, match="no valid reply"):
            Board.open(os.ttyname(slave), timeout_s=0.05, retries=2)
        assert time.monotonic() - started < 3.0  # 3 x 0.05 s, with room for a busy machine
        assert len(os.read(master, 4096)) > 0  # three requests did go out
    finally:
        os.close(master)
        os.close(slave)


@NEEDS_PTY
def test_version_mismatch():
    """A board speaking only protocol 4 answers in its own version: the driver names both."""
    master, slave = os.openpty()
    tty.setraw(slave)

    def board_v2() -> None:
        request = None
        decoder = FrameDecoder()
        while request is None:
            request = next(iter(decoder.feed(os.read(master, 4096))), None)
        reply = Frame(0xFF, request.seq, 1, pack_error(ErrorCode.BAD_VERSION, "speaks 4"), version=4)
        os.write(master, reply.encode())

    responder = threading.Thread(target=board_v2, daemon=True)
    responder.start()
    try:
        with pytest.raises(VersionMismatch, match="board speaks protocol version 4"):
            Board.open(os.ttyname(slave), timeout_s=1, retries=0)
    finally:
        responder.join(2)
        os.close(master)
        os.close(slave)


def pulses_and_reads(board: Board) -> tuple[list, int]:
    """A few pulses and reads of every size; returns what they gave and the bytes they moved."""
    rng = np.random.default_rng(3)
    sent = board.stats.bytes_sent + board.stats.bytes_received
    results = []
    for fraction in (0.05, 0.5, 1.0):
        mask = rng.random((8, 8)) < fraction
        results.append(board.set_pulses(0, 3.0, rng.uniform(0.5, 1.3, (8, 8)), mask))
        results.append(board.reset_pulses(0, rng.uniform(0.5, 1.2, (8, 8)), 5.0, mask))
        results.append(board.read_devices(0, mask))
    return results, board.stats.bytes_sent + board.stats.bytes_received - sent


def test_a_version_1_board_gets_version_1_frames_and_the_same_answers(tmp_path):
    """A board that speaks only protocol 1 answers the driver's version-2 IDENTIFY with
    BAD_VERSION; the driver goes on in version 1 (whole-array pulses and reads), with the same
    results as version 2 gives, for more bytes."""
    runs = {}
    for version in (1, 2):
        url = emu_url(tmp_path / f"v{version}.npz", 4, **NOISELESS, **STILL,
                      **{"firmware.protocol_version": version})
        with Board.open(url) as board:
            assert board.protocol == board.info.protocol_version == version
            runs[version] = pulses_and_reads(board)
    (v1, bytes_v1), (v2, bytes_v2) = runs[1], runs[2]
    for a, b in zip(v1, v2):
        assert np.array_equal(a, b, equal_nan=True)
    reads = v2[2::3]
    assert all(np.isfinite(g).sum() == n for g, n in zip(reads, v2[0::3]))
    assert bytes_v2 < 0.6 * bytes_v1


def test_lost_board_is_a_link_error(emulated_board):
    emu = emulated_board(process=True)
    board = Board.open(emu.port, timeout_s=0.2, retries=1)
    try:
        emu.stop()
        with pytest.raises(LinkError):
            board.status()
    finally:
        board.close()


def test_board_reset_is_recovered(emulated_board):
    """After an unannounced reset, the driver restores its settings and repeats the command."""
    emu = emulated_board(reset_rate=0.1, seed=3)
    with Board.open(emu.port, timeout_s=0.1, retries=8) as board:
        board.configure(v_read_v=0.1)
        board.load_program(loop_programs())
        board.route_smu(0, 1, 1)
        for _ in range(15):
            board.run_sequence(np.zeros((5, 2)))
        status = board.status()
        assert status.epoch > 1  # resets happened
        assert status.config.v_read_v == 0.1
        assert status.programs == 2 and status.smu_route == (0, 1, 1)


def test_command_count_in_frames(module_board):
    """Host-loop cost: one frame per VMM; the statistics count them."""
    with Board.open(module_board.port) as board:
        sent = board.stats.frames_sent
        for _ in range(5):
            board.vmm(0, np.zeros(8))
        assert board.stats.frames_sent - sent == 5 and board.stats.retries == 0


def test_the_feedback_deadband_lets_a_one_code_state_decay(emulated_board):
    """A state fed back at 0.52 DAC steps per ADC code (what a column with a 4 % low TIA gain
    makes of 0.5 steps): without a deadband one code rounds up to a whole step, which reads
    back as one code again, so the state sticks there for ever; 0.05 steps of deadband move
    the tie to 0.55 and the state decays to zero, on the board as on the host."""
    emu = emulated_board(settings={**NOISELESS, **STILL})
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 0.9)
        g = emu.truth_siemens()[0][2, 0]  # the feedback row's device on the output column
        dac = board.info.dac_lsb_v
        range_a = min(board.info.adc_ranges_a,  # one DAC step on row 2: about one ADC code
                      key=lambda r: abs(np.log(g * dac / board.info.adc_lsb_a(r))))
        adc = board.info.adc_lsb_a(range_a)
        assert 0.7 < g * dac / adc < 1.4
        board.configure(vmm_range_a=range_a)
        inputs = np.zeros((30, 1))
        inputs[0] = 1.0
        last = {}
        for deadband_steps in (0.0, 0.05):
            board.load_program([LoopProgram(
                0, [0] + [-1] * 7, [8 * adc / g] + [0] * 7,  # the input starts ~8 codes
                [-1, -1, 0] + [-1] * 5, [0, 0, 0.52 * dac / adc] + [0] * 5,
                out_plus=[0], out_minus=[-1], feedback_deadband_v=deadband_steps * dac)])
            on_board = np.rint(board.run_sequence(inputs)[:, 0] / adc)
            host = np.rint(board.run_sequence_host(inputs)[:, 0] / adc)
            assert np.array_equal(on_board, host) and on_board[0] >= 6
            last[deadband_steps] = on_board[-10:]
        assert (last[0.0] == 1).all()
        assert (last[0.05] == 0).all()


def test_a_board_without_load_loop_refuses_a_deadband_in_one_line(emulated_board):
    emu = emulated_board(settings={**NOISELESS, "firmware.protocol_version": 2})
    with Board.open(emu.port) as board:
        assert board.protocol == 2
        board.load_program(loop_programs())  # LOAD_PROGRAM: no deadband, no problem
        assert (board.n_inputs, board.n_outputs) == (2, 3)
        with_deadband = [LoopProgram(**{**vars_of(p), "feedback_deadband_v": 1e-4})
                         for p in loop_programs()]
        frames = board.frames_sent
        with pytest.raises(Unsupported, match="protocol 2, whose on-board loop has no feedback "
                                              "deadband"):
            board.load_program(with_deadband)
        assert board.frames_sent == frames  # refused before anything was sent


def test_column_correction_undoes_the_read_chain_in_the_loop(emulated_board):
    """With the TIA gain/offset errors given as the program's column correction, the on-board
    loop matches the loop on an error-free read chain; without it, the errors compound."""
    quiet = {"read_chain.read_noise_rel": 0, **STILL}
    errors = {**quiet, "read_chain.tia_gain_sigma": 0.05, "read_chain.tia_offset_sigma_fs": 0.005}
    runs = {}
    for name, settings in (("ideal", {**quiet, "read_chain.tia_gain_sigma": 0,
                                      "read_chain.tia_offset_sigma_fs": 0}), ("errors", errors)):
        emu = emulated_board(settings=settings, seed=4)
        with Board.open(emu.port) as board:
            rng = np.random.default_rng(0)
            for array in (0, 1):
                board.set_pulses(array, 3.0, rng.uniform(0.5, 1.3, (8, 8)))
            board.configure(vmm_range_a=40e-6)
            inputs = rng.uniform(-1, 1, (60, 2))
            board.load_program(loop_programs())
            runs[name] = board.run_sequence(inputs)
            if name == "errors":
                chain = emu.state().chain
                lsb = board.info.adc_lsb_a(board.config.vmm_range_a)
                corrected = [LoopProgram(**{**vars_of(p), "column_gain": chain.gain[p.array],
                                            "column_offset_a": chain.offset_codes[p.array] * lsb})
                             for p in loop_programs()]
                board.load_program(corrected)
                runs["corrected"] = board.run_sequence(inputs)
    scale = np.abs(runs["ideal"]).max()
    raw_error = np.abs(runs["errors"] - runs["ideal"]).max() / scale
    corrected_error = np.abs(runs["corrected"] - runs["ideal"]).max() / scale
    assert raw_error > 0.02
    assert corrected_error < raw_error / 4


def vars_of(program: LoopProgram) -> dict:
    return {name: getattr(program, name) for name in (
        "array", "row_input", "row_input_gain_v", "row_feedback", "row_feedback_gain_v_per_a",
        "out_plus", "out_minus")}
