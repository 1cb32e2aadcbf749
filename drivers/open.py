"""`open_board`: the one place a command turns its --port into a board backend.

    arc2://ID?firmware=PATH[&array=1T1R|passive][&mapping=NAME|FILE]
                    an ArC TWO through pyarc2 (drivers.arc2), wired by an arc2control mapping
    anything else   our protocol: a /dev or pty path, or a pyserial URL (socket://, emu://)
                    (drivers.board)
"""

from __future__ import annotations

from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.errors import BadInput


SERIAL_TIMEOUT_S = 0.5
"""The reply timeout of our protocol's ports when none is given, s."""


def open_board(port: str, timeout_s: float | None = None) -> BoardLike:
    """The board at `port`, connected; use it as a context manager. `timeout_s`: the reply
    timeout of our protocol's ports (default SERIAL_TIMEOUT_S); an ArC TWO has none (its calls
    block until the instrument is done), so giving one for arc2:// is a BadInput."""
    if port.startswith("arc2:"):
        from imssa_hw.drivers.arc2 import Arc2Board

        if timeout_s is not None:
            raise BadInput(f"{port}: a reply timeout does nothing on an ArC TWO (its calls "
                           f"block until the instrument is done); leave it out")
        return Arc2Board.open(port)
    from imssa_hw.drivers.board import Board

    return Board.open(port, timeout_s=SERIAL_TIMEOUT_S if timeout_s is None else timeout_s)
