"""Opcodes, error codes and payload codecs, shared by the driver and the emulated board.

Control messages (identify, status, configure) carry compact JSON; data messages (pulses, reads,
VMM, programs, sequences) carry little-endian binary. Every `unpack_*` raises PayloadError, and
nothing else, on a payload that does not fit its format. docs/protocol.md lists every layout.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, fields, is_dataclass
from functools import cached_property
from enum import IntEnum
from typing import Any, TypeVar

import numpy as np

from imssa_hw.board import (BoardSpec, ConductanceWindow, Geometry, PulseLimits,
                            ReadChainSpec)
from imssa_hw.board.params import (PULSE_STEPS_MAX, PULSE_STEPS_PER_V, RANGES, Bounds,
                                     check_ranges)
from imssa_hw.config import FieldError, typed
from imssa_hw.drivers.errors import PayloadError, VoltageLimitError
from imssa_hw.drivers.loop_program import LoopProgram


class Opcode(IntEnum):
    IDENTIFY = 0x01
    STATUS = 0x02
    CONFIGURE = 0x03
    RESET = 0x04
    SET_PULSES = 0x10
    RESET_PULSES = 0x11
    SET_SPARSE = 0x12
    RESET_SPARSE = 0x13
    READ_ARRAY = 0x20
    READ_DEVICE = 0x21
    VMM = 0x22
    READ_DEVICES = 0x23
    LOAD_PROGRAM = 0x30
    RUN_SEQUENCE = 0x31
    LOAD_LOOP = 0x32
    ROUTE_SMU = 0x40


REPLY_BIT = 0x80
"""A reply's opcode is the request's opcode | REPLY_BIT."""
ERROR_OPCODE = 0xFF
"""The opcode of every error reply; its payload is `code:u8 | message:utf-8`."""
ANY_EPOCH = 0
"""Requests with this epoch are accepted by the EPOCH_FREE opcodes whatever the board's epoch."""
LIMIT_SLACK_V = 1e-6
"""Slack on limit checks, for voltages that went through float32 or millivolts."""
MAX_LOOP_STEPS = 1 << 20
"""RUN_SEQUENCE: sequences x steps one request may ask for, where identify does not say."""
STEP_TIME_S = 50e-6
"""RUN_SEQUENCE: the longest one program takes for one step of one sequence, s, where identify
does not say."""
EPOCH_FREE = frozenset({Opcode.IDENTIFY, Opcode.STATUS, Opcode.RESET})
SINCE_VERSION = {Opcode.SET_SPARSE: 2, Opcode.RESET_SPARSE: 2, Opcode.READ_DEVICES: 2,
                 Opcode.LOAD_LOOP: 3}
"""The protocol version that brought an opcode (the others are version 1's): in a frame of an
older version it is an UNKNOWN_OPCODE, as on a board of that version."""


class ErrorCode(IntEnum):
    BAD_FRAME = 1        # CRC or stuffing error: resend (the reply's seq is 0, it could not be read)
    BAD_VERSION = 2      # the reply header carries the board's version
    UNKNOWN_OPCODE = 3
    BAD_PAYLOAD = 4
    BAD_ARGUMENT = 5     # index out of range, unsupported setting, program that does not fit
    LIMIT = 6            # a voltage or pulse width outside the limits; nothing was applied
    STALE_EPOCH = 7      # the board reset since; the reply header carries the new epoch
    NO_PROGRAM = 8
    INTERNAL = 9


T = TypeVar("T")


@dataclass(frozen=True)
class BoardLimits(PulseLimits):
    """Safe operating limits; the board refuses anything outside them: the pulse limits, plus
    the read voltage and the pulse widths."""

    v_read_max: float
    """Largest read voltage and largest |row voltage| of a VMM or loop step."""
    pulse_width_min_s: float
    pulse_width_max_s: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, "v_read_max", "pulse_width_min_s", "pulse_width_max_s")
        if self.pulse_width_min_s > self.pulse_width_max_s:
            raise ValueError(f"pulse_width_min_s ({self.pulse_width_min_s:g} s) must not exceed "
                             f"pulse_width_max_s ({self.pulse_width_max_s:g} s)")


@dataclass(frozen=True)
class BoardConfig:
    """The board's volatile settings (lost at a reset)."""

    v_read_v: float
    """Row voltage of conductance reads, V."""
    read_range_a: float
    """ADC full scale (+-) of conductance reads, A."""
    vmm_range_a: float
    """ADC full scale (+-) of VMM and loop steps, A."""
    pulse_width_s: float
    """Width of SET and RESET pulses, s."""


@dataclass(frozen=True)
class IdentifyReply:
    """What identify returns on the wire: the board's facts in flat fields, the form every
    protocol version sends (docs/protocol.md). `BoardInfo.from_reply` reads it."""

    board_id: str
    firmware: str
    protocol_version: int
    arrays: int
    rows: int
    cols: int
    limits: BoardLimits
    adc_bits: int
    """Signed ADC (`imssa_hw.board.converters`: its codes span -range .. +range)."""
    dac_bits: int
    """Signed row DAC (`imssa_hw.board.converters`: its codes and steps)."""
    adc_ranges_a: tuple[float, ...]
    g_window_siemens: tuple[float, float]
    """Nominal programmable conductance window (min, max), S."""
    max_loop_steps: int = MAX_LOOP_STEPS
    step_time_s: float = STEP_TIME_S
    mapping: str = ""
    cell: str = "1T1R"

    def __post_init__(self) -> None:
        self.spec()  # validates the announced board (ValueError; `typed` makes it a PayloadError)

    def spec(self) -> BoardSpec:
        """The board these fields describe."""
        return BoardSpec(Geometry(self.arrays, self.rows, self.cols, self.cell),
                         ConductanceWindow(*self.g_window_siemens),
                         ReadChainSpec(self.limits.v_read_max, self.dac_bits, self.adc_bits,
                                       self.adc_ranges_a),
                         PulseLimits(self.limits.v_set_max, self.limits.v_reset_max,
                                     self.limits.v_gate_max))


@dataclass(frozen=True)
class BoardInfo:
    """A board as it announces itself: its description (`spec`, the shared parameter tree) and
    what only its firmware knows. The other attributes are views of the spec."""

    board_id: str
    firmware: str
    protocol_version: int
    spec: BoardSpec
    pulse_width_min_s: float
    """The shortest pulse the board applies, s."""
    pulse_width_max_s: float
    """The longest pulse the board applies, s."""
    max_loop_steps: int = MAX_LOOP_STEPS
    """RUN_SEQUENCE: at most this many sequences x steps per request (BAD_ARGUMENT beyond)."""
    step_time_s: float = STEP_TIME_S
    """RUN_SEQUENCE: the longest one program takes for one step of one sequence, s (the
    driver's reply timeout grows by this per program step)."""
    mapping: str = ""
    """The channel mapping rows and columns are read through (an ArC TWO's arc2control
    mapping, e.g. "resarray32"); empty for a board whose firmware maps its own lines."""

    def __post_init__(self) -> None:
        self.limits  # validates the pulse widths (ValueError)

    @classmethod
    def from_reply(cls, reply: IdentifyReply) -> BoardInfo:
        """The board an identify reply announces."""
        return cls(reply.board_id, reply.firmware, reply.protocol_version, reply.spec(),
                   reply.limits.pulse_width_min_s, reply.limits.pulse_width_max_s,
                   reply.max_loop_steps, reply.step_time_s, reply.mapping)

    def reply(self) -> IdentifyReply:
        """This board as identify sends it."""
        return IdentifyReply(self.board_id, self.firmware, self.protocol_version, self.arrays,
                             self.rows, self.cols, self.limits, self.adc_bits, self.dac_bits,
                             self.adc_ranges_a, self.g_window_siemens, self.max_loop_steps,
                             self.step_time_s, self.mapping, self.cell)

    @property
    def arrays(self) -> int:
        return self.spec.geometry.arrays

    @property
    def rows(self) -> int:
        return self.spec.geometry.rows

    @property
    def cols(self) -> int:
        return self.spec.geometry.cols

    @property
    def cell(self) -> str:
        """The arrays' cells: "1T1R" (a transistor gate per device) or "passive"."""
        return self.spec.geometry.cell

    @cached_property
    def limits(self) -> BoardLimits:
        """What the board refuses beyond: the spec's pulse limits and read voltage, the
        firmware's pulse widths."""
        pulses = self.spec.limits
        return BoardLimits(pulses.v_set_max, pulses.v_reset_max, pulses.v_gate_max,
                           self.spec.read_chain.v_read_max, self.pulse_width_min_s,
                           self.pulse_width_max_s)

    @property
    def adc_bits(self) -> int:
        """Signed ADC (`imssa_hw.board.converters`: its codes span -range .. +range)."""
        return self.spec.read_chain.adc_bits

    @property
    def dac_bits(self) -> int:
        """Signed row DAC (`imssa_hw.board.converters`: its codes and steps)."""
        return self.spec.read_chain.dac_bits

    @property
    def adc_ranges_a(self) -> tuple[float, ...]:
        return self.spec.read_chain.adc_ranges_a

    @property
    def g_window_siemens(self) -> tuple[float, float]:
        """Nominal programmable conductance window (min, max), S."""
        return self.spec.window.g_min_siemens, self.spec.window.g_max_siemens

    def adc_lsb_a(self, range_a: float) -> float:
        """Current of one ADC code at full scale `range_a`."""
        return self.spec.read_chain.adc_lsb_a(range_a)

    def read_lsb_siemens(self, config: BoardConfig) -> float:
        """Conductance of one ADC code of a read with `config`'s read range and voltage, S."""
        return self.adc_lsb_a(config.read_range_a) / config.v_read_v

    @property
    def dac_lsb_v(self) -> float:
        return self.spec.read_chain.dac_lsb_v


def unpack_identify(payload: bytes) -> BoardInfo:
    """An identify reply: the board it announces (PayloadError when it does not fit)."""
    return BoardInfo.from_reply(from_json(IdentifyReply, payload))


@dataclass(frozen=True)
class BoardStatus:
    """What status returns."""

    epoch: int
    uptime_s: float
    config: BoardConfig
    smu_route: tuple[int, int, int] | None
    programs: int
    n_inputs: int
    n_outputs: int
    frames_received: int
    bad_frames: int
    replays: int
    pulses_applied: int


def to_json(obj: Any) -> bytes:
    """A dataclass (or dict) as compact UTF-8 JSON."""
    return json.dumps(asdict(obj) if is_dataclass(obj) else obj, separators=(",", ":")).encode()


def _load_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"bad JSON payload: {exc}") from None


def from_json(kind: type[T], payload: bytes) -> T:
    """Decode a dataclass sent with `to_json`."""
    return _typed(kind, _load_json(payload))


def _typed(kind: Any, value: Any) -> Any:
    """`config.typed`, its FieldError a PayloadError."""
    try:
        return typed(kind, value)
    except FieldError as exc:
        raise PayloadError(str(exc)) from None


def unpack_config_changes(payload: bytes) -> dict[str, float]:
    """A configure request: a JSON object with some of BoardConfig's fields."""
    changes = _load_json(payload)
    allowed = {f.name for f in fields(BoardConfig)}
    if not isinstance(changes, dict) or not set(changes) <= allowed:
        raise PayloadError(f"configure takes a JSON object with keys among {sorted(allowed)}")
    return {name: _typed(float, value) for name, value in changes.items()}


class _Reader:
    """Consumes a payload front to back; every shortfall or leftover is a PayloadError."""

    def __init__(self, payload: bytes) -> None:
        self._data = memoryview(payload)
        self._pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._data):
            raise PayloadError("payload too short")
        values = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += size
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self._pos + size > len(self._data):
            raise PayloadError("payload too short")
        values = np.frombuffer(self._data, dtype, count, self._pos)
        self._pos += size
        return values

    def done(self) -> None:
        if self._pos != len(self._data):
            raise PayloadError(f"{len(self._data) - self._pos} unexpected trailing bytes")


def pack_error(code: int, message: str) -> bytes:
    return bytes([code]) + message.encode()


def unpack_error(payload: bytes) -> tuple[int, str]:
    if not payload:
        raise PayloadError("empty error payload")
    return payload[0], payload[1:].decode(errors="replace")


def _millivolts(volts: np.ndarray, name: str) -> np.ndarray:
    """Volts as int16 millivolts; values that do not fit are refused before anything is sent."""
    mv = np.rint(np.asarray(volts, dtype=float) * PULSE_STEPS_PER_V)
    if not np.isfinite(mv).all() or np.abs(mv).max(initial=0) > PULSE_STEPS_MAX:
        raise VoltageLimitError(ErrorCode.LIMIT, f"{name} must be finite and within "
                                                 f"+-{PULSE_STEPS_MAX / PULSE_STEPS_PER_V:g} V")
    return mv.astype("<i2")


@dataclass(eq=False)
class PulseBatch:
    """SET_PULSES / RESET_PULSES: `array:u8 | v:i16[R*C] mV | v_gate:i16[R*C] mV | mask bits`.

    Matrices are row-major; the mask is packed 8 devices a byte, least significant bit first.
    """

    array: int
    v: np.ndarray
    v_gate: np.ndarray
    mask: np.ndarray

    def pack(self) -> bytes:
        bits = np.packbits(np.asarray(self.mask, dtype=bool).ravel(), bitorder="little")
        return (struct.pack("<B", self.array) + _millivolts(self.v, "pulse voltage").tobytes()
                + _millivolts(self.v_gate, "gate voltage").tobytes() + bits.tobytes())

    def outside(self, v_max: float, v_gate_max: float, name: str) -> str | None:
        """The first masked device whose pulse voltage is outside 0..v_max or gate voltage
        outside 0..v_gate_max, said in words, or None: the rule the driver and the board both
        apply before a pulse. Values under a false mask bit are not checked."""
        for values, top, what in ((self.v, v_max, f"{name} voltage"),
                                  (self.v_gate, v_gate_max, "gate voltage")):
            bad = self.mask & ~((values >= 0) & (values <= top + LIMIT_SLACK_V))
            if bad.any():
                row, col = np.argwhere(bad)[0]
                return f"{what} {values[row, col]:.3f} V at ({row}, {col}) outside 0..{top} V"
        return None

    @staticmethod
    def size(n_devices: int) -> int:
        """Bytes of the payload for an array of `n_devices`."""
        return 1 + 4 * n_devices + (n_devices + 7) // 8

    @classmethod
    def unpack(cls, payload: bytes, rows: int, cols: int) -> PulseBatch:
        reader = _Reader(payload)
        (array,) = reader.take("<B")
        n = rows * cols
        v = reader.array("<i2", n).reshape(rows, cols) * 1e-3
        gate = reader.array("<i2", n).reshape(rows, cols) * 1e-3
        bits = reader.array("u1", (n + 7) // 8)
        reader.done()
        mask = np.unpackbits(bits, count=n, bitorder="little").astype(bool).reshape(rows, cols)
        return cls(array, v, gate, mask)


class OutOfRange(PayloadError):
    """A payload that decodes but holds an index or value out of range: the board answers
    BAD_ARGUMENT (BAD_PAYLOAD is for payloads that do not decode)."""


DEVICE_LIST, DEVICE_BITMAP = 0, 1
"""The two forms of a device set (version 2): a list of flat indices, or a bitmap of the array."""


def _as_list(count: int, n_devices: int) -> bool:
    """Whether a set of `count` devices goes as a list: when no longer than the bitmap (a
    list addresses at most 65,536 devices)."""
    return n_devices <= 1 << 16 and 2 + 2 * count <= (n_devices + 7) // 8


def device_set_size(count: int, n_devices: int) -> int:
    """Bytes of a set of `count` devices of an array of `n_devices`, in its shorter form."""
    return 1 + (2 + 2 * count if _as_list(count, n_devices) else (n_devices + 7) // 8)


def pack_devices(index: np.ndarray, n_devices: int) -> bytes:
    """A device set, `form:u8` then the shorter of `count:u16 | index:u16[count]` (form 0: flat
    row-major indices, increasing) and `mask:bits[n_devices]` (form 1: 8 devices a byte, least
    significant bit first)."""
    index = np.asarray(index, dtype=np.int64)
    if _as_list(len(index), n_devices):
        return struct.pack("<BH", DEVICE_LIST, len(index)) + index.astype("<u2").tobytes()
    mask = np.zeros(n_devices, bool)
    mask[index] = True
    return struct.pack("<B", DEVICE_BITMAP) + np.packbits(mask, bitorder="little").tobytes()


def _take_devices(reader: _Reader, n_devices: int) -> np.ndarray:
    """The flat indices of a device set (increasing, each below `n_devices`)."""
    (form,) = reader.take("<B")
    if form == DEVICE_LIST:
        (count,) = reader.take("<H")
        index = reader.array("<u2", count).astype(np.int64)
        if count and (index[-1] >= n_devices or (np.diff(index) <= 0).any()):
            raise OutOfRange(f"device indices must increase and stay below {n_devices}")
        return index
    if form == DEVICE_BITMAP:
        bits = reader.array("u1", (n_devices + 7) // 8)
        return np.flatnonzero(np.unpackbits(bits, count=n_devices, bitorder="little"))
    raise PayloadError(f"device set form {form} is neither {DEVICE_LIST} (list) nor "
                       f"{DEVICE_BITMAP} (bitmap)")


@dataclass(eq=False)
class SparsePulses:
    """SET_SPARSE / RESET_SPARSE (version 2): `array:u8 | devices | shared:u8 |
    v:i16[1 or n] mV | v_gate:i16[1 or n] mV`, n the devices of the set. Bit 0 of `shared`:
    one pulse voltage for every device, bit 1: one gate voltage; the other bits are 0."""

    array: int
    index: np.ndarray
    """Flat row-major indices of the pulsed devices, increasing."""
    v: np.ndarray
    v_gate: np.ndarray

    @classmethod
    def of(cls, batch: PulseBatch) -> SparsePulses:
        """The masked devices of a whole-array batch."""
        index = np.flatnonzero(batch.mask)
        return cls(batch.array, index, np.ravel(batch.v)[index], np.ravel(batch.v_gate)[index])

    def pack(self, n_devices: int) -> bytes:
        shared, values = 0, []
        for bit, (volts, name) in enumerate(((self.v, "pulse voltage"),
                                             (self.v_gate, "gate voltage"))):
            mv = _millivolts(volts, name)
            if mv.size and (mv == mv[0]).all():
                shared |= 1 << bit
                mv = mv[:1]
            values.append(mv.tobytes())
        return b"".join([struct.pack("<B", self.array), pack_devices(self.index, n_devices),
                         struct.pack("<B", shared), *values])

    @classmethod
    def unpack(cls, payload: bytes, rows: int, cols: int) -> SparsePulses:
        reader = _Reader(payload)
        (array,) = reader.take("<B")
        index = _take_devices(reader, rows * cols)
        (shared,) = reader.take("<B")
        if shared > 3:
            raise PayloadError(f"shared flags 0x{shared:02x}: only bits 0 and 1 are defined")
        v, gate = (np.broadcast_to(reader.array("<i2", 1 if shared >> bit & 1 else len(index))
                                   * 1e-3, index.shape) for bit in (0, 1))
        reader.done()
        return cls(array, index, v, gate)

    def batch(self, rows: int, cols: int) -> PulseBatch:
        """The same pulses as a whole-array batch (zeros under a false mask bit)."""
        mask, v, gate = np.zeros(rows * cols, bool), np.zeros(rows * cols), np.zeros(rows * cols)
        mask[self.index], v[self.index], gate[self.index] = True, self.v, self.v_gate
        shape = (rows, cols)
        return PulseBatch(self.array, v.reshape(shape), gate.reshape(shape), mask.reshape(shape))


def pack_read_devices(array: int, index: np.ndarray, n_devices: int) -> bytes:
    """READ_DEVICES (version 2): `array:u8 | devices`; the reply is `codes:i16[n]` in index order."""
    return struct.pack("<B", array) + pack_devices(index, n_devices)


def read_devices_size(count: int, n_devices: int) -> int:
    """Payload bytes of a READ_DEVICES request and its reply, for `count` devices."""
    return 1 + device_set_size(count, n_devices) + 2 * count


def read_array_size(n_devices: int) -> int:
    """Payload bytes of a READ_ARRAY request and its reply."""
    return 1 + 2 * n_devices


def unpack_read_devices(payload: bytes, n_devices: int) -> tuple[int, np.ndarray]:
    reader = _Reader(payload)
    (array,) = reader.take("<B")
    index = _take_devices(reader, n_devices)
    reader.done()
    return array, index


def pack_device(array: int, row: int, col: int) -> bytes:
    """READ_DEVICE: `array:u8 | row:u16 | col:u16`."""
    return struct.pack("<BHH", array, row, col)


def unpack_device(payload: bytes) -> tuple[int, int, int]:
    reader = _Reader(payload)
    address = reader.take("<BHH")
    reader.done()
    return address


def pack_route(device: tuple[int, int, int] | None) -> bytes:
    """ROUTE_SMU: `connect:u8 | array:u8 | row:u16 | col:u16` (connect 0: SMU port open)."""
    return struct.pack("<BBHH", 0, 0, 0, 0) if device is None else struct.pack("<BBHH", 1, *device)


def unpack_route(payload: bytes) -> tuple[int, int, int] | None:
    reader = _Reader(payload)
    connect, array, row, col = reader.take("<BBHH")
    reader.done()
    if connect > 1:
        raise PayloadError("connect must be 0 or 1")
    return (array, row, col) if connect else None


def pack_vmm(array: int, v_rows: np.ndarray) -> bytes:
    """VMM: `array:u8 | v:f32[R]` volts."""
    return struct.pack("<B", array) + np.asarray(v_rows, dtype="<f4").tobytes()


def unpack_vmm(payload: bytes, rows: int) -> tuple[int, np.ndarray]:
    reader = _Reader(payload)
    (array,) = reader.take("<B")
    v = reader.array("<f4", rows).astype(float)
    reader.done()
    return array, v


def pack_array(array: int) -> bytes:
    """READ_ARRAY: `array:u8`."""
    return struct.pack("<B", array)


def unpack_array(payload: bytes) -> int:
    reader = _Reader(payload)
    (array,) = reader.take("<B")
    reader.done()
    return array


WIRE_ADC_BITS = Bounds(RANGES["adc_bits"].low, 15)
"""The ADC bits a board on this protocol may have: codes travel as int16, and so does a loop
output, the difference of two columns' codes (up to 2**adc_bits - 1 apart)."""


def pack_codes(codes: np.ndarray) -> bytes:
    """ADC codes (READ_ARRAY, READ_DEVICE and VMM replies): `i16[n]`, row-major."""
    return np.asarray(codes).astype("<i2").tobytes()


def unpack_codes(payload: bytes, count: int) -> np.ndarray:
    reader = _Reader(payload)
    codes = reader.array("<i2", count)
    reader.done()
    return codes


def pack_count(count: int) -> bytes:
    """Pulse replies: the number of devices pulsed, `u32`."""
    return struct.pack("<I", count)


def unpack_count(payload: bytes) -> int:
    reader = _Reader(payload)
    (count,) = reader.take("<I")
    reader.done()
    return count


_PROGRAM_HEAD = "<BHH"  # array, rows, n_out


def pack_programs(programs: list[LoopProgram], deadband: bool = False) -> bytes:
    """LOAD_PROGRAM: `count:u8`, then per program `array:u8 | rows:u16 | n_out:u16 |
    row_input:i16[R] | row_input_gain_v:f32[R] | row_feedback:i16[R] |
    row_feedback_gain_v_per_a:f32[R] | out_plus:i16[n_out] | out_minus:i16[n_out] |
    n_corr:u16 | column_gain:f32[n_corr] | column_offset_a:f32[n_corr]` (n_corr 0: none).
    With `deadband`, LOAD_LOOP (version 3): the same, then `feedback_deadband_v:f32[count]`."""
    if not deadband and any(p.feedback_deadband_v for p in programs):
        raise ValueError("LOAD_PROGRAM cannot carry a feedback deadband (LOAD_LOOP does)")
    parts = [struct.pack("<B", len(programs))]
    for p in programs:
        corrected = p.column_gain is not None
        parts += [struct.pack(_PROGRAM_HEAD, p.array, p.rows, p.n_outputs),
                  p.row_input.astype("<i2").tobytes(), p.row_input_gain_v.astype("<f4").tobytes(),
                  p.row_feedback.astype("<i2").tobytes(),
                  p.row_feedback_gain_v_per_a.astype("<f4").tobytes(),
                  p.out_plus.astype("<i2").tobytes(), p.out_minus.astype("<i2").tobytes(),
                  struct.pack("<H", len(p.column_gain) if corrected else 0)]
        if corrected:
            parts += [p.column_gain.astype("<f4").tobytes(), p.column_offset_a.astype("<f4").tobytes()]
    if deadband:
        parts.append(np.array([p.feedback_deadband_v for p in programs], "<f4").tobytes())
    return b"".join(parts)


def unpack_programs(payload: bytes, deadband: bool = False) -> list[LoopProgram]:
    """The programs of a LOAD_PROGRAM payload, or with `deadband` of a LOAD_LOOP one."""
    reader = _Reader(payload)
    (count,) = reader.take("<B")
    decoded = []
    for _ in range(count):
        array, rows, n_out = reader.take(_PROGRAM_HEAD)
        fields_ = [reader.array(dtype, rows) for dtype in ("<i2", "<f4", "<i2", "<f4")]
        fields_ += [reader.array("<i2", n_out), reader.array("<i2", n_out)]
        (n_corr,) = reader.take("<H")
        fields_ += ([reader.array("<f4", n_corr), reader.array("<f4", n_corr)] if n_corr
                    else [None, None])
        decoded.append((array, fields_))
    deadbands = reader.array("<f4", count) if deadband else np.zeros(count)
    reader.done()
    programs = []
    for (array, fields_), deadband_v in zip(decoded, deadbands):
        routing, correction = fields_[:6], fields_[6:]  # rows and outputs; column correction
        try:
            programs.append(LoopProgram(array, *routing, float(deadband_v), *correction))
        except ValueError as exc:  # decoded, but its values are out of range
            raise OutOfRange(f"program {len(programs)}: {exc}") from None
    return programs


def pack_program_reply(n_inputs: int, n_outputs: int) -> bytes:
    """LOAD_PROGRAM reply: `n_inputs:u16 | n_outputs:u16`."""
    return struct.pack("<HH", n_inputs, n_outputs)


def unpack_program_reply(payload: bytes) -> tuple[int, int]:
    reader = _Reader(payload)
    values = reader.take("<HH")
    reader.done()
    return values


_SEQUENCE_HEAD = "<IIH"  # n_seq, n_steps, width


def pack_sequences(values: np.ndarray, dtype: str) -> bytes:
    """RUN_SEQUENCE request (inputs, `f4`) and reply (output codes, `i2`):
    `n_seq:u32 | n_steps:u32 | width:u16 | values[n_seq*n_steps*width]`."""
    n_seq, n_steps, width = values.shape
    return struct.pack(_SEQUENCE_HEAD, n_seq, n_steps, width) + np.asarray(values, dtype).tobytes()


def sequence_header(payload: bytes) -> tuple[int, int, int]:
    """(n_seq, n_steps, width) of a RUN_SEQUENCE payload, read before anything is allocated."""
    return _Reader(payload).take(_SEQUENCE_HEAD)


def unpack_sequences(payload: bytes, dtype: str) -> np.ndarray:
    reader = _Reader(payload)
    shape = reader.take(_SEQUENCE_HEAD)
    values = reader.array(dtype, shape[0] * shape[1] * shape[2]).reshape(shape)
    reader.done()
    return values
