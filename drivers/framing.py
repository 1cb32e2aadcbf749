"""Frames on the wire: a 5-byte header, the payload and a CRC-16, byte-stuffed between delimiters.

    frame   = header | payload | crc16                  (crc16 big-endian, CRC-16/CCITT-FALSE)
    header  = version:u8 | opcode:u8 | seq:u16 LE | epoch:u8    (version: the protocol's)
    wire    = END | stuff(frame) | END                   (END = 0xC0)

Byte stuffing is SLIP's (RFC 1055): 0xDB -> 0xDB 0xDD, then 0xC0 -> 0xDB 0xDC. Both directions are
two `bytes.replace` calls, which run in C; a COBS coder in Python takes about 1 ms per 8 KiB of
small integers (one loop turn per zero byte). See docs/protocol.md.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

from imssa_hw.drivers.errors import FrameError

PROTOCOL_VERSIONS = (1, 2, 3)
"""The protocol versions this code speaks, oldest first (docs/protocol.md: Versions)."""
PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
"""The highest: what the driver offers first, what the emulated board speaks by default."""
END = b"\xc0"
ESC = b"\xdb"
ESC_END = b"\xdb\xdc"
ESC_ESC = b"\xdb\xdd"
HEADER = struct.Struct("<BBHB")
CRC_BYTES = 2
MIN_FRAME_BYTES = HEADER.size + CRC_BYTES
MAX_FRAME_BYTES = 64 << 20
"""Longest stuffed frame accepted; longer runs without a delimiter are dropped as garbage."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


def stuff(data: bytes) -> bytes:
    """Escape every END and ESC byte so that END only ever delimits frames."""
    return data.replace(ESC, ESC_ESC).replace(END, ESC_END)


def unstuff(data: bytes) -> bytes:
    """Undo `stuff`; raises FrameError when an ESC is not followed by 0xDC or 0xDD."""
    escapes = data.count(ESC)
    if escapes:
        if escapes != data.count(ESC_END) + data.count(ESC_ESC):
            raise FrameError("bad byte stuffing: ESC not followed by 0xDC or 0xDD")
        data = data.replace(ESC_END, END).replace(ESC_ESC, ESC)
    return data


@dataclass(frozen=True)
class Frame:
    """One decoded frame. `opcode` is a request opcode, a reply (opcode | 0x80) or ERROR (0xFF)."""

    opcode: int
    seq: int
    epoch: int
    payload: bytes = b""
    version: int = PROTOCOL_VERSIONS[0]
    """The protocol version of the frame; version 1 unless told (every board reads it)."""

    def encode(self) -> bytes:
        """The frame as sent on the wire, delimiters included."""
        body = HEADER.pack(self.version, self.opcode, self.seq, self.epoch) + self.payload
        return END + stuff(body + crc16(body).to_bytes(CRC_BYTES, "big")) + END

    @classmethod
    def decode(cls, stuffed: bytes) -> Frame:
        """Parse the bytes between two delimiters; raises FrameError."""
        body = unstuff(stuffed)
        if len(body) < MIN_FRAME_BYTES:
            raise FrameError(f"frame of {len(body)} bytes is shorter than {MIN_FRAME_BYTES}")
        if crc16(body) != 0:  # the CRC of data followed by its big-endian CRC is 0
            raise FrameError("CRC mismatch")
        version, opcode, seq, epoch = HEADER.unpack_from(body)
        return cls(opcode, seq, epoch, body[HEADER.size:-CRC_BYTES], version)


class FrameDecoder:
    """Splits a byte stream into frames; garbage becomes FrameError items, never an exception."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Add received bytes; return the frames (or errors) completed by them, in order."""
        self._buffer += data
        items: list[Frame | FrameError] = []
        if END in data:
            *complete, rest = self._buffer.split(END)
            for chunk in complete:
                if chunk:
                    try:
                        items.append(Frame.decode(bytes(chunk)))
                    except FrameError as exc:
                        items.append(exc)
            self._buffer = bytearray(rest)
        if len(self._buffer) > self._max:
            self._buffer.clear()
            items.append(FrameError(f"no delimiter within {self._max} bytes: dropped"))
        return items
