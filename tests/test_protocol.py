"""The wire protocol: framing, exact byte exchanges with the emulator, codecs and fuzzing."""

from __future__ import annotations

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
from imssa_hw.emulator.profile import load_profile
from imssa_hw.emulator.server import build_board

from conftest import NOISELESS

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
    # protocol version 2: BAD_VERSION (2), in a version-1 header
    (h("c0 02 01 05 00 00 c8 cb c0"),
     h("c0 01 ff 05 00 01 02") + b"protocol version 2 not supported, this board speaks 1" + h("a1 ba c0")),
]


def test_exact_byte_exchanges(emulated_board):
    emu = emulated_board(settings=NOISELESS)
    with serial.serial_for_url(emu.port, timeout=2) as port:
        for sent, expected in EXCHANGES:
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


def test_program_round_trip():
    program = LoopProgram(1, [0, -1, 1], [0.1, 0, 0.2], [-1, 0, 1], [0, 1e4, 2e4], [0, 2], [1, -1])
    (back,) = m.unpack_programs(m.pack_programs([program]))
    for name in ("array", "row_input", "row_input_gain_v", "row_feedback",
                 "row_feedback_gain_v_per_a", "out_plus", "out_minus"):
        assert np.array_equal(getattr(back, name), getattr(program, name)), name


def test_info_json_round_trip():
    board, _ = build_board(load_profile(), 0, None)
    assert m.from_json(m.BoardInfo, m.to_json(board.info)) == board.info
    with pytest.raises(PayloadError):
        m.from_json(m.BoardInfo, b'{"board_id": 3}')


UNPACKERS = [
    lambda p: m.PulseBatch.unpack(p, 2, 3), m.unpack_device, m.unpack_route,
    lambda p: m.unpack_vmm(p, 4), m.unpack_array, lambda p: m.unpack_codes(p, 3), m.unpack_count,
    m.unpack_programs, m.unpack_program_reply, lambda p: m.unpack_sequences(p, "<f4"),
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
    board, _ = build_board(load_profile(overrides={"board.arrays": 2, "board.rows": 4, "board.cols": 4}), 0, None)
    return board


OPCODES = st.sampled_from([int(op) for op in m.Opcode] + [0x00, 0x7F, 0x81, 0xFF])


@given(OPCODES, st.integers(0, 0xFFFF), st.integers(0, 3), st.binary(max_size=200))
@FUZZ
def test_firmware_answers_every_frame_with_a_typed_reply(firmware, opcode, seq, epoch, payload):
    reply = firmware.handle(Frame(opcode, seq, epoch, payload))
    assert reply.seq == seq
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
