"""Hostile requests against the board's firmware, in process: whatever a client sends, the
answer is a reply or a typed error, never INTERNAL, and no request costs unbounded work."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imssa_hw.drivers.framing import PROTOCOL_VERSION, Frame
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import ERROR_OPCODE, ErrorCode, Opcode, pack_programs
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.emulator.server import build_board

PROFILE = load_emulator_profile(None, {"board.arrays": 2, "board.rows": 4, "board.cols": 4,
                                       "firmware.max_loop_steps": 4096})
"""A small board whose longest run is short (4096 steps), so that the largest run a fuzzed header
may ask for costs milliseconds: within the default board's 4 Mi steps, 0xFFFF x 4 steps run for
half a second."""


def fresh_board():
    board, _ = build_board(PROFILE, seed=0, state_path=None)
    return board


def send(board, opcode: int, payload: bytes):
    return board.handle(Frame(opcode, 1, board.epoch, payload, PROTOCOL_VERSION))


def error_code(reply) -> int | None:
    return reply.payload[0] if reply.opcode == ERROR_OPCODE else None


counts = st.one_of(st.integers(0, 4), st.sampled_from([0xFFFF, 0xFFFFFFFF, 1 << 31]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opcode=st.sampled_from(list(Opcode)), payload=st.binary(max_size=96))
def test_random_payloads_never_get_internal(opcode, payload):
    assert error_code(send(fresh_board(), opcode, payload)) != ErrorCode.INTERNAL


NO_INPUT = LoopProgram(0, [-1, -1, -1, -1], [0.0] * 4, [-1, 0, -1, -1], [0, 1e4, 0, 0], [0], [1])


@settings(max_examples=200, deadline=None)
@given(n_seq=counts, n_steps=counts, width=st.integers(0, 3), extra=st.integers(0, 8))
def test_run_sequence_headers_are_checked_before_any_work(n_seq, n_steps, width, extra):
    board = fresh_board()
    assert error_code(send(board, Opcode.LOAD_PROGRAM, pack_programs([NO_INPUT]))) is None
    values = min(n_seq * n_steps * width, 64) + extra
    payload = struct.pack("<IIH", n_seq, n_steps, width) + np.zeros(values, "<f4").tobytes()
    reply = send(board, Opcode.RUN_SEQUENCE, payload)
    code = error_code(reply)
    assert code != ErrorCode.INTERNAL
    within = n_seq * n_steps <= board.info.max_loop_steps
    if code is None:
        assert n_seq >= 1 and n_steps >= 1 and within
    elif n_seq == 0 or n_steps == 0 or not within:
        assert code == ErrorCode.BAD_ARGUMENT


@given(field=st.sampled_from(["row_input", "row_feedback", "out_plus", "out_minus", "array"]),
       value=st.sampled_from([-2, 4, 99, 300]))
@settings(max_examples=60, deadline=None)
def test_out_of_range_program_indices_are_all_bad_argument(field, value):
    """One rule for every index of LOAD_PROGRAM: out of range is BAD_ARGUMENT (a payload that
    does not decode is BAD_PAYLOAD). An input channel may be any number >= 0."""
    rows = {"row_input": [0, -1, -1, -1], "row_feedback": [-1, 0, -1, -1], "out_plus": [0],
            "out_minus": [1]}
    array = 0
    if field == "array":
        array = value % 256
    else:
        rows[field] = [value] + rows[field][1:]
    payload = (struct.pack("<BBHH", 1, array, 4, 1)
               + np.asarray(rows["row_input"], "<i2").tobytes()
               + np.asarray([0.1, 0, 0, 0], "<f4").tobytes()
               + np.asarray(rows["row_feedback"], "<i2").tobytes()
               + np.asarray([0, 1e4, 0, 0], "<f4").tobytes()
               + np.asarray(rows["out_plus"], "<i2").tobytes()
               + np.asarray(rows["out_minus"], "<i2").tobytes() + struct.pack("<H", 0))
    code = error_code(send(fresh_board(), Opcode.LOAD_PROGRAM, payload))
    if field == "row_input" and value >= 0:
        assert code is None
    else:
        assert code == ErrorCode.BAD_ARGUMENT, (field, value, code)


def test_hostile_files_and_addresses_are_one_line_exit_2(tmp_path):
    """Files that are not what they claim and instrument addresses that lead nowhere."""
    from click.testing import CliRunner

    from imssa_hw.cli.main import cli
    from imssa_hw.hil.budget import load_programmed

    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_bytes(b"\xff\xfe[board]\n")
    garbage = tmp_path / "achieved.npz"
    garbage.write_bytes(b"\x80\x04not an archive")
    cases = [
        (["compile", str(tmp_path), "--out", str(tmp_path / "d")], "is a folder"),
        (["compile", str(garbage), "--out", str(tmp_path / "d"), "--profile", str(bad_toml)],
         "cannot read the profile"),
        (["emulate", "--profile", str(bad_toml)], "cannot read profile"),
        (["calibrate", "--port", "emu://?arrays=1&rows=4&cols=4", "--smu",
          "TCPIP::no-such-host.invalid::5025::SOCKET", "--out", str(tmp_path / "c")],
         "a VISA resource looks like"),
        (["calibrate", "--port", "emu://?arrays=1&rows=4&cols=4", "--smu", "not-a-visa-address",
          "--out", str(tmp_path / "c")], "a VISA resource looks like"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    import pytest

    from imssa_hw.errors import BadInput
    with pytest.raises(BadInput, match="is not a numpy .npz archive"):
        load_programmed(garbage)



SPARSE = [Opcode.SET_SPARSE, Opcode.RESET_SPARSE, Opcode.READ_DEVICES]
EDGES_MV = [0, 0, 800, 1200, 2000, 2001, 3500, 3501, 5500, 5501, -1]
"""Millivolts at and beyond the limits (RESET 2 V, SET 3.5 V, gate 5.5 V)."""
indices = st.one_of(st.lists(st.integers(0, 0xFFFF), max_size=20),
                    st.lists(st.integers(0, 17), max_size=8, unique=True).map(sorted))


@settings(max_examples=600, deadline=None)
@given(opcode=st.sampled_from(SPARSE), array=st.sampled_from([0, 1, 2, 255]),
       form=st.sampled_from([0, 0, 1, 1, 2]), index=indices,
       count=st.sampled_from([None, None, None, 0, 1, 3, 20, 0xFFFF]),
       shared=st.sampled_from([0, 1, 2, 3, 4, 0x81]), fit=st.sampled_from([True, True, False]),
       data=st.data())
def test_device_sets_are_checked_before_any_device_is_touched(opcode, array, form, index, count,
                                                              shared, fit, data):
    """Version 2's device sets with adversarial forms, counts, indices, flags and values: a
    pulse or read happens only for a well-formed set of increasing in-range indices within the
    limits; every other request is refused with the documented code and touches nothing."""
    board = fresh_board()
    n = board.info.rows * board.info.cols
    count = len(index) if count is None else count
    if form == 0:
        devices = struct.pack("<BH", 0, count) + np.asarray(index, "<u2").tobytes()
        listed = len(index)
    else:
        bits = data.draw(st.binary(min_size=2, max_size=2))
        devices = bytes([form]) + bits
        listed = int(np.unpackbits(np.frombuffer(bits, np.uint8)).sum())
    payload = bytes([array]) + devices
    if opcode != Opcode.READ_DEVICES:
        values = (1 if shared & 1 else listed) + (1 if shared & 2 else listed)
        millivolts = data.draw(st.lists(st.sampled_from(EDGES_MV) if fit else st.integers(-32768, 32767),
                                        min_size=values if fit else 0,
                                        max_size=values if fit else 2 * values + 2))
        payload += bytes([shared]) + np.asarray(millivolts, "<i2").tobytes()
    payload += data.draw(st.sampled_from([b"", b"", b"", b"\x00", b"\x00\x01"]))
    before = board.pulses_applied
    reply = send(board, opcode, payload)
    code = error_code(reply)
    event(f"{opcode.name}: {'accepted' if code is None else ErrorCode(code).name}")
    assert code != ErrorCode.INTERNAL
    # a count of 0 names no device, whatever follows (those bytes may read as a valid empty
    # set's flags and values)
    named = 0 if form == 0 and count == 0 else listed
    if code is None:
        assert array < board.info.arrays and form in (0, 1)
        if form == 0 and count:
            assert count == len(index) and (np.diff(index) > 0).all() and max(index, default=0) < n
    if opcode == Opcode.READ_DEVICES or code is not None:
        assert board.pulses_applied == before  # a read, or refused: no device was pulsed
    else:
        assert board.pulses_applied - before == struct.unpack("<I", reply.payload)[0] == named
    if form == 2:
        assert code == ErrorCode.BAD_PAYLOAD
    elif form == 0 and count == len(index) and len(payload) == 4 + 2 * count:  # a whole read
        in_order = (np.diff(index) > 0).all() and max(index, default=0) < n
        assert code == (None if in_order and array < 2 else ErrorCode.BAD_ARGUMENT)
