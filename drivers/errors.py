"""Typed errors of the board link and protocol.

Every error here is a `HardwareError` (the command line shows it as one line, exit code 3),
except `PortMissing` and `Unsupported`, which are also `BadInput` (exit code 2): the user named
a port that is not there, or asked a board for something it cannot do.
"""

from __future__ import annotations

from imssa_hw.errors import BadInput, HardwareError


class DriverError(HardwareError):
    """Base class of every board, link and protocol error."""


class PortMissing(DriverError, BadInput):
    """The port does not exist (no such device, or nothing listens at the socket URL)."""


class Unsupported(DriverError, BadInput):
    """The board cannot do what was asked (a capability it lacks, see `Capabilities`); nothing
    was sent to it."""


class PortBusy(DriverError):
    """Another process holds the port open exclusively."""


class LinkError(DriverError):
    """The transport failed: the port vanished or a read or write failed."""


class BoardSilent(LinkError):
    """No valid reply came within the timeout, after every retry."""


class ProtocolError(DriverError):
    """Bytes that do not follow the protocol: a bad frame or a malformed payload."""


class FrameError(ProtocolError):
    """A frame with a bad CRC, bad byte stuffing or a bad length."""


class PayloadError(ProtocolError):
    """A payload that does not decode as its opcode's format."""


class VersionMismatch(ProtocolError):
    """The board speaks another protocol version than this driver."""

    def __init__(self, board_version: int, driver_version: int) -> None:
        super().__init__(f"board speaks protocol version {board_version}, this driver speaks "
                         f"{driver_version}: update the firmware or the driver")
        self.board_version = board_version
        self.driver_version = driver_version


class BoardError(DriverError):
    """The board answered with a typed error reply; `code` is its `ErrorCode`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class VoltageLimitError(BoardError):
    """A requested voltage or pulse width is outside the board's limits; nothing was applied."""


class BoardWasReset(BoardError):
    """The board reset since the last exchange (its epoch changed): volatile settings are lost."""

    def __init__(self, code: int, message: str, epoch: int) -> None:
        super().__init__(code, message)
        self.epoch = epoch
