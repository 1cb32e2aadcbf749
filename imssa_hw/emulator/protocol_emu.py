"""`emu://`: an emulated board inside this process, as a pyserial transport (for fast tests).

    Board.open("emu://?seed=3&arrays=2&rows=8&cols=8&set=read_chain.read_noise_rel=0")

The same firmware as `imssa-hw emulate` (`EmulatedBoard`) answers every request frame as it is
written, so the reply is waiting when the driver reads: the same protocol bytes through the same
driver, without a process, a pty or link faults. Query options: `seed` (default 0), `profile`
(a shipped name or a TOML file), `arrays`, `rows`, `cols`, `state` (a .npz path, kept across
opens as by `emulate --state`), `time_scale`, `clock` (`wall`, the default, or `virtual`: this
process's `clock.VIRTUAL`, for tests) and `set=SECTION.KEY=VALUE` (repeatable). pyserial
finds this module because `imssa_hw.drivers.link` lists `imssa_hw.emulator` among its URL
handler packages. The pty path (`emulator.process`) stays for the integration tests.
"""

from __future__ import annotations

from pathlib import Path

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from imssa_hw.drivers.errors import FrameError
from imssa_hw.drivers.framing import FrameDecoder
from imssa_hw.drivers.port_url import split_port_url
from imssa_hw.emulator.board import EmulatedBoard
from imssa_hw.emulator.clock import CLOCKS
from imssa_hw.errors import BadInput

OPTIONS = ("seed", "profile", "arrays", "rows", "cols", "state", "time_scale", "clock", "set")


def board_from_url(url: str) -> EmulatedBoard:
    """The emulated board an `emu://?...` URL describes; BadInput (exit 2, not a failed link)
    naming what is wrong with the URL or the profile it asks for."""
    from imssa_hw.emulator.profile import load_emulator_profile, parse_override
    from imssa_hw.emulator.server import build_board

    _, query = split_port_url(url, "emu", OPTIONS)

    def one(name: str, kind: type, default=None):
        values = query.get(name)
        try:
            return default if not values else kind(values[-1])
        except ValueError:
            raise BadInput(f"emu:// option {name}={values[-1]!r} is not a {kind.__name__}") from None
    try:
        settings = dict(parse_override(text) for text in query.get("set", []))
        for key in ("arrays", "rows", "cols"):
            if one(key, int) is not None:
                settings[f"board.{key}"] = one(key, int)
        profile = load_emulator_profile(one("profile", str), settings)
        state = one("state", str)
        clock = one("clock", str, "wall")
        if clock not in CLOCKS:
            raise BadInput(f"clock={clock!r} is none of {', '.join(CLOCKS)}")
        board, _ = build_board(profile, one("seed", int, 0), Path(state) if state else None,
                               one("time_scale", float, 1.0), CLOCKS[clock])
    except BadInput as exc:
        raise BadInput(f"emu://: {exc}") from None
    board.save()
    return board


class Serial(SerialBase):
    """The transport: writes go to the firmware, its replies wait in a buffer for reads."""

    board: EmulatedBoard | None = None

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        self.board = board_from_url(self._port)
        self._decoder = FrameDecoder()
        self._replies = bytearray()
        self.is_open = True

    def close(self) -> None:
        if self.is_open and self.board is not None:
            self.board.save()
        self.is_open = False

    def _reconfigure_port(self) -> None:
        """Nothing to configure: no baud rate or lines in this process."""

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        return len(self._replies)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        data = bytes(self._replies[:size])
        del self._replies[:size]
        return data

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        for item in self._decoder.feed(bytes(data)):
            reply = (self.board.bad_frame(str(item)) if isinstance(item, FrameError)
                     else self.board.handle(item))
            self._replies += reply.encode()
        return len(data)

    def reset_input_buffer(self) -> None:
        if self.is_open:
            self._replies.clear()

    def reset_output_buffer(self) -> None:
        """Writes are executed at once: nothing is ever waiting to go out."""
