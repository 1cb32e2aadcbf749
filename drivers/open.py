"""`open_board`: the one place a command turns its --port into a board backend.

    arc2://ID?firmware=PATH[&array=1t1r|passive][&mapping=NAME|FILE]
                    an ArC TWO through pyarc2 (drivers.arc2), wired by an arc2control mapping
    anything else   our protocol: a /dev or pty path, or a pyserial URL (socket://, emu://)
                    (drivers.board)
"""

from __future__ import annotations

from imssa_hw.drivers.board_like import BoardLike


def open_board(port: str, timeout_s: float = 0.5) -> BoardLike:
    """The board at `port`, connected; use it as a context manager. `timeout_s` is the serial
    reply timeout (the ArC TWO's calls block until the instrument is done)."""
    if port.startswith("arc2:"):
        from imssa_hw.drivers.arc2 import Arc2Board

        return Arc2Board.open(port)
    from imssa_hw.drivers.board import Board

    return Board.open(port, timeout_s=timeout_s)
