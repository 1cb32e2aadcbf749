"""The wire protocol: framing, exact byte exchanges with the emulator, codecs and fuzzing."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imssa_hw.drivers import messages as m
from imssa_hw.drivers.board import Board
from imssa_hw.drivers.errors import FrameError, PayloadError
from imssa_hw.drivers.framing import Frame, FrameDecoder, crc16, stuff, unstuff
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.emulator.board import EmulatedBoard
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.emulator.server import build_board

from support.boards import NOISELESS, STILL

FUZZ = settings(derandomize=True, deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def crc_reference(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the catalogue check value
    assert crc16(b"\x01\x40\x07\x00\x01") == crc_reference(b"\x01\x40\x07\x00\x01")


def test_identify_request_bytes():
    # END | version 1 | IDENTIFY | seq 0x1234 LE | epoch 0 | CRC BE | END
    assert Frame(m.Opcode.IDENTIFY, 0x1234, 0).encode() == h("c0 01 01 34 12 00 b1 9d c0")
    assert crc_reference(h("01 01 34 12 00")) == 0xB19D


def test_stuffing_escapes_delimiter_and_escape():
    assert stuff(h("00 c0 db 01")) == h("00 db dc db dd 01")
    assert unstuff(h("00 db dc db dd 01")) == h("00 c0 db 01")
    for bad in (h("db"), h("db 01"), h("db db dc")):
        with pytest.raises(FrameError):
            unstuff(bad)


@given(st.binary(max_size=300))
@settings(derandomize=True)
def test_stuffing_round_trip(data):
    stuffed = stuff(data)
    assert b"\xc0" not in stuffed
    assert unstuff(stuffed) == data


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(max_size=200))
@settings(derandomize=True)
def test_frame_round_trip(opcode, seq, epoch, payload):
    wire = Frame(opcode, seq, epoch, payload).encode()
    assert FrameDecoder().feed(wire) == [Frame(opcode, seq, epoch, payload)]


def test_decoder_resynchronizes_after_garbage():
    frame = Frame(m.Opcode.STATUS, 3, 1)
    items = FrameDecoder().feed(b"\x17garbage\xdb" + frame.encode() + b"junk" + frame.encode())
    assert [type(i) for i in items] == [FrameError, Frame, FrameError, Frame]
    assert items[1] == items[3] == frame
    decoder = FrameDecoder()
    byte_by_byte = [item for byte in frame.encode() for item in decoder.feed(bytes([byte]))]
    assert byte_by_byte == [frame]


def test_decoder_bounds_its_buffer():
    decoder = FrameDecoder(max_frame_bytes=100)
    items = decoder.feed(b"\x01" * 101)
    assert len(items) == 1 and isinstance(items[0], FrameError)
    frame = Frame(m.Opcode.STATUS, 3, 1)
    assert decoder.feed(frame.encode()) == [frame]


# -- exact exchanges with an emulated board (pymeasure style: bytes written, bytes read) ---------

EXCHANGES = [
    # ROUTE_SMU seq 7, epoch 1: connect array 0, row 1, col 2. The reply opcode 0xC0 is stuffed.
    (h("c0 01 40 07 00 01 01 00 01 00 02 00 22 e0 c0"), h("c0 01 db dc 07 00 01 9d 48 c0")),
    # the same frame again: replayed from the cache, byte for byte
    (h("c0 01 40 07 00 01 01 00 01 00 02 00 22 e0 c0"), h("c0 01 db dc 07 00 01 9d 48 c0")),
    # epoch 0 on an epoch-checked command: STALE_EPOCH (7) with a message
    (h("c0 01 40 08 00 00 01 00 01 00 02 00 02 d5 c0"),
     h("c0 01 ff 08 00 01 07") + b"the board was reset: epoch 0 is now 1" + h("89 25 c0")),
    # VMM seq 10 on array 1 with 8 zero volts: 8 zero codes (noiseless read chain)
    (h("c0 01 22 0a 00 01 01") + bytes(32) + h("31 be c0"), h("c0 01 a2 0a 00 01") + bytes(16) + h("19 d7 c0")),
    # a frame with a wrong CRC: BAD_FRAME (1), sequence number unknown (0)
    (h("c0 01 22 0a 00 01 01") + bytes(32) + h("31 bf c0"),
     h("c0 01 ff 00 00 01 01") + b"CRC mismatch" + h("b1 2d c0")),
    # protocol version 4: BAD_VERSION (2), in a header of the board's highest version, 3
    (h("c0 04 01 05 00 00 05 4e c0"),
     h("c0 03 ff 05 00 01 02") + b"protocol version 4 not supported, this board speaks 1 to 3"
     + h("20 55 c0")),
]

EXCHANGES_V2 = [
    # SET_SPARSE in a version-1 frame: UNKNOWN_OPCODE (3), as on a version-1 board
    (h("c0 01 12 1f 00 01 01 00 02 00 01 00 13 00 01 b8 0b e8 03 b0 04 22 61 c0"),
     h("c0 01 ff 1f 00 01 03") + b"opcode 0x12 in protocol version 1" + h("32 a8 c0")),
    # SET_SPARSE seq 0x20, version 2: array 1, a list of 2 devices (flat 1 = (0, 1) and
    # 19 = (2, 3)), shared 0x01: one pulse voltage 3000 mV, gates 1000 and 1200 mV; 2 pulsed
    (h("c0 02 12 20 00 01 01 00 02 00 01 00 13 00 01 b8 0b e8 03 b0 04 7a 2e c0"),
     h("c0 02 92 20 00 01 02 00 00 00 b8 49 c0")),
    # the same frame again: the cached reply, no second pulse
    (h("c0 02 12 20 00 01 01 00 02 00 01 00 13 00 01 b8 0b e8 03 b0 04 7a 2e c0"),
     h("c0 02 92 20 00 01 02 00 00 00 b8 49 c0")),
    # READ_DEVICES of those two (list form): codes 74 and 132, in index order
    (h("c0 02 23 21 00 01 01 00 02 00 01 00 13 00 bc e2 c0"),
     h("c0 02 a3 21 00 01 4a 00 84 00 3d 24 c0")),
    # READ_DEVICES on array 0, bitmap form: devices 0 and 9 (bit 0 of byte 0, bit 1 of byte 1)
    (h("c0 02 23 22 00 01 00 01 01 02 00 00 00 00 00 00 a0 82 c0"),
     h("c0 02 a3 22 00 01 02 00 02 00 bf c7 c0")),
    # RESET_SPARSE, shared 0x03 (one voltage, one gate): gate 6000 mV is beyond 5.5 V: LIMIT (6)
    (h("c0 02 13 23 00 01 01 00 01 00 01 00 03 e8 03 70 17 c3 fa c0"),
     h("c0 02 ff 23 00 01 06") + b"gate voltage 6.000 V at (0, 1) outside 0..5.5 V; no device "
     b"was pulsed" + h("ba 85 c0")),
    # READ_DEVICES with indices that do not increase: BAD_ARGUMENT (5)
    (h("c0 02 23 24 00 01 01 00 02 00 13 00 01 00 a6 32 c0"),
     h("c0 02 ff 24 00 01 05") + b"device indices must increase and stay below 64" + h("d3 67 c0")),
    # SET_SPARSE with an undefined shared bit: BAD_PAYLOAD (4)
    (h("c0 02 12 25 00 01 01 00 01 00 01 00 04 b8 0b e8 03 1e d8 c0"),
     h("c0 02 ff 25 00 01 04") + b"shared flags 0x04: only bits 0 and 1 are defined"
     + h("fc 89 c0")),
]

# LOAD_LOOP's payload: one program on array 0 (8 rows, 1 output): row 0 driven by input 0 at
# 0.1 V per unit, row 1 by output 0 at 1000 V/A; output 0 = column 0 - column 1; no column
# correction; then the program's feedback deadband, 1e-4 V (f32 17 b7 d1 38)
LOOP = h("01 00 08 00 01 00"                          # count 1 | array 0 | rows 8 | n_out 1
         "00 00 ff ff ff ff ff ff ff ff ff ff ff ff ff ff"    # row_input: 0, -1 x 7
         "cd cc cc 3d" + " 00" * 28 +                          # row_input_gain_v: 0.1, 0 x 7
         "ff ff 00 00 ff ff ff ff ff ff ff ff ff ff ff ff"    # row_feedback: -1, 0, -1 x 6
         "00 00 00 00 00 00 7a 44" + " 00" * 24 +              # row_feedback_gain_v_per_a
         "00 00 01 00 00 00"                                    # out_plus 0 | out_minus 1 | n_corr 0
         "17 b7 d1 38")                                         # feedback_deadband_v
EXCHANGES_V3 = [
    # LOAD_LOOP in a version-2 frame: UNKNOWN_OPCODE (3), as on a version-2 board
    (h("c0 02 32 26 00 01") + LOOP + h("00 1d c0"),
     h("c0 02 ff 26 00 01 03") + b"opcode 0x32 in protocol version 2" + h("ee 07 c0")),
    # LOAD_LOOP seq 0x27, version 3: loaded; 1 input, 1 output
    (h("c0 03 32 27 00 01") + LOOP + h("0d dc c0"), h("c0 03 b2 27 00 01 01 00 01 00 99 ab c0")),
]


def test_exact_byte_exchanges(emulated_board):
    emu = emulated_board(settings={**NOISELESS, **STILL})  # STILL: reads repeat to the code
    with serial.serial_for_url(emu.port, timeout=2) as port:
        for sent, expected in EXCHANGES + EXCHANGES_V2 + EXCHANGES_V3:
            port.write(sent)
            assert port.read(len(expected)) == expected
        time.sleep(0.05)
        assert port.in_waiting == 0


# -- codecs ----------------------------------------------------------------------------------

def test_pulse_batch_round_trip():
    rng = np.random.default_rng(1)
    batch = m.PulseBatch(2, np.round(rng.uniform(0, 3.5, (3, 5)), 3),
                         np.round(rng.uniform(0, 5.5, (3, 5)), 3), rng.random((3, 5)) < 0.5)
    back = m.PulseBatch.unpack(batch.pack(), 3, 5)
    assert back.array == 2 and (back.mask == batch.mask).all()
    assert np.allclose(back.v, batch.v, atol=1e-12) and np.allclose(back.v_gate, batch.v_gate, atol=1e-12)


def test_sparse_pulses_round_trip_in_the_shorter_device_set():
    """Few devices go as a list of indices, many as a bitmap; a voltage every device shares is
    sent once."""
    rng = np.random.default_rng(2)
    for count, form, shared in ((3, m.DEVICE_LIST, 0b01), (40, m.DEVICE_BITMAP, 0b10)):
        index = np.sort(rng.choice(64, count, replace=False))
        v = np.full(count, 3.0) if shared == 0b01 else np.round(rng.uniform(0, 2, count), 3)
        gate = np.full(count, 5.0) if shared == 0b10 else np.round(rng.uniform(0, 5, count), 3)
        payload = m.SparsePulses(1, index, v, gate).pack(64)
        devices = 3 + 2 * count if form == m.DEVICE_LIST else 1 + 8
        assert payload[1] == form and payload[1 + devices] == shared
        assert len(payload) == m.device_set_size(count, 64) + 2 + 2 + 2 * count
        back = m.SparsePulses.unpack(payload, 8, 8)
        assert back.array == 1 and np.array_equal(back.index, index)
        assert np.allclose(back.v, v, atol=1e-12) and np.allclose(back.v_gate, gate, atol=1e-12)
        batch = back.batch(8, 8)
        assert np.array_equal(np.flatnonzero(batch.mask), index)
        assert np.allclose(batch.v.ravel()[index], v) and (batch.v[~batch.mask] == 0).all()
    assert m.unpack_read_devices(m.pack_read_devices(2, [5, 9], 64), 64)[1].tolist() == [5, 9]


def test_program_round_trip():
    program = LoopProgram(1, [0, -1, 1], [0.1, 0, 0.2], [-1, 0, 1], [0, 1e4, 2e4], [0, 2], [1, -1])
    (back,) = m.unpack_programs(m.pack_programs([program]))
    for name in ("array", "row_input", "row_input_gain_v", "row_feedback",
                 "row_feedback_gain_v_per_a", "out_plus", "out_minus"):
        assert np.array_equal(getattr(back, name), getattr(program, name)), name


def test_info_json_round_trip():
    board, _ = build_board(load_emulator_profile(), 0, None)
    assert m.unpack_identify(m.to_json(board.info.reply())) == board.info
    with pytest.raises(PayloadError):
        m.unpack_identify(b'{"board_id": 3}')
    # a board from before the work bounds leaves them out: the documented defaults
    older = json.loads(m.to_json(board.info.reply()))
    del older["max_loop_steps"], older["step_time_s"]
    info = m.unpack_identify(json.dumps(older).encode())
    assert (info.max_loop_steps, info.step_time_s) == (1 << 20, 50e-6)
    with pytest.raises(PayloadError):
        m.unpack_identify(json.dumps({**older, "unknown_field": 1}).encode())
    # what the board object holds: the spec and the firmware's facts, the rest derived
    assert board.info.spec == load_emulator_profile().spec
    assert (board.info.rows, board.info.limits.v_read_max) == (
        board.info.spec.geometry.rows, board.info.spec.read_chain.v_read_max)


UNPACKERS = [
    lambda p: m.PulseBatch.unpack(p, 2, 3), lambda p: m.SparsePulses.unpack(p, 2, 3),
    lambda p: m.unpack_read_devices(p, 6), m.unpack_device, m.unpack_route,
    lambda p: m.unpack_vmm(p, 4), m.unpack_array, lambda p: m.unpack_codes(p, 3), m.unpack_count,
    m.unpack_programs, lambda p: m.unpack_programs(p, deadband=True), m.unpack_program_reply, lambda p: m.unpack_sequences(p, "<f4"),
    m.unpack_config_changes, lambda p: m.from_json(m.BoardStatus, p), m.unpack_error,
]


@given(st.binary(max_size=120))
@FUZZ
def test_payload_decoders_raise_only_payload_errors(payload):
    for unpack in UNPACKERS:
        try:
            unpack(payload)
        except PayloadError:
            pass


# -- the board's parser, fuzzed in process and over the pty -------------------------------------

@pytest.fixture(scope="module")
def firmware() -> EmulatedBoard:
    profile = load_emulator_profile(overrides={"board.arrays": 2, "board.rows": 4, "board.cols": 4})
    board, _ = build_board(profile, 0, None)
    return board


OPCODES = st.sampled_from([int(op) for op in m.Opcode] + [0x00, 0x7F, 0x81, 0xFF])


@given(OPCODES, st.integers(0, 0xFFFF), st.integers(0, 3), st.binary(max_size=200),
       st.sampled_from([1, 2, 3, 4]))
@FUZZ
def test_firmware_answers_every_frame_with_a_typed_reply(firmware, opcode, seq, epoch, payload,
                                                         version):
    reply = firmware.handle(Frame(opcode, seq, epoch, payload, version))
    assert reply.seq == seq and reply.version == min(version, 3)
    if reply.opcode == m.ERROR_OPCODE:
        code, _ = m.unpack_error(reply.payload)
        assert code in set(m.ErrorCode) - {m.ErrorCode.INTERNAL}
    else:
        assert reply.opcode == opcode | m.REPLY_BIT


@given(st.lists(st.binary(min_size=1, max_size=64), max_size=6))
@settings(derandomize=True, deadline=None, max_examples=25)
def test_emulator_survives_garbage_on_the_wire(module_board, chunks):
    with serial.serial_for_url(module_board.port, timeout=1) as port:
        for chunk in chunks:
            port.write(chunk)
    with Board.open(module_board.port, timeout_s=0.5, retries=2) as board:
        assert board.identify().rows == 8
