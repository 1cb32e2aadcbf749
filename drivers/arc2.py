"""The ArC TWO backend: `BoardLike` on an ArC TWO (ArC Instruments) through its API, pyarc2.

    with open_board("arc2://0?firmware=/path/to/fw.bin&mapping=standard32") as board:
        g = board.read_array(0)                                      # (32, 32) S

Mapping. `?mapping=NAME|FILE` is one of arc2control's channel mappings (`drivers/arc2_mapping.py`;
default resarray32, arc2control's default): the board's rows are the mapping's word lines in
order and its columns its bit lines, so device (r, c) is arc2control's crosspoint W{r:02d}B{c:02d}
and `info` has the mapping's size. Word lines must be on libarc2's word channels (16-31, 48-63)
and bit lines on its bit channels (0-15, 32-47), as in every crossbar mapping arc2control ships.

Polarity, as arc2control's: the word line is the high terminal, the bit line the low one, and a
device sees V(word) - V(bit). Reads: `read_one(low=bit, high=word)` (libarc2 puts the low channel
at -v_read_v and measures the high one at 0 V); whole arrays `read_all(v_read_v, BiasOrder.Cols)`,
which biases each bit channel in turn (0-15, 32-47) and returns the word channels' currents in
ascending channel order, reordered here through the mapping; conductance = |I| / v_read_v, as
arc2control computes it. Pulses: `pulse_slice_masked(chan=bit, mask=[words])` (libarc2: `chan`
is the low channel, the mask the high ones, a positive voltage puts the highs above the low):
SET positive (word above bit), RESET negative, one slice per bit line and (voltage, gate), as
arc2control's pulse_one(low=bit, high=word) and its slice pulses. VMM: word line r at +v_r
(`config_channels`, every other channel at 0 V), the bit lines' currents read at 0 V
(`read_slice_open`). Which sign the instrument reports for current into a bit line is its own
convention, so the first VMM measures it (every row at +v_read_v; the sign most columns show),
keeps it as `vmm_current_sign` and multiplies every VMM's currents by it: a VMM returns
v_rows @ G.

Gates. On a 1T1R array (`?array=1T1R`, the default) selector k drives the gates of word line k
of the mapping (row k). A pulse slice raises the selectors' high level (`config_aux_channels`,
SELH) to its gate voltage and only its rows' selectors (`config_selectors`). Reads and VMMs
raise every row's selector at `READ_GATE_V`. On a passive array (`?array=passive`) the selectors
are left alone and gate voltages only checked.

Limits are checked before any instrument call; what ArC TWO cannot do (an on-board loop, an SMU
route) is in `capabilities` and refused with one line (`Unsupported`). The instrument auto-ranges
its 18-bit current ADC, so the configured ranges only round up to one of its three. Every
instrument call is wrapped: an `ArC2Error`, or a panic in pyarc2 (pyo3's PanicException, a
BaseException), is a one-line `LinkError` naming the call (exit code 3).

Tests drive the backend without hardware by handing the constructor an object with the pyarc2
`Instrument` methods used here (tests/arc2_standin.py); the `arc2://` opener always calls pyarc2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imssa_hw.board import CELLS, BoardSpec, ConductanceWindow, Geometry, PulseLimits
from imssa_hw.board.params import on_pulse_steps
from imssa_hw.board.profile import load_board_profile
from imssa_hw.board.tables import shipped_board
from imssa_hw.drivers.arc2_mapping import CHANNELS, DEFAULT_MAPPING, ChannelMapping, load_mapping
from imssa_hw.drivers.board_like import Capabilities, smallest_range
from imssa_hw.drivers.errors import (BoardError, LinkError, PortMissing, ProtocolError,
                                     Unsupported, VoltageLimitError)
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import (LIMIT_SLACK_V, BoardConfig, BoardInfo, BoardLimits,
                                       BoardStatus, ErrorCode)
from imssa_hw.drivers.port_url import split_port_url
from imssa_hw.errors import BadInput
from imssa_hw.extras import require

SCHEME = "arc2://"
ALL_WORDS = (*range(16, 32), *range(48, 64))
"""libarc2's word channels (its ALL_WORDS), in the order `read_all` returns them."""
ALL_BITS = (*range(0, 16), *range(32, 48))
"""libarc2's bit channels (its ALL_BITS), in the order `read_all(.., Columns)` biases them."""
PROFILE = "board-arc2"
"""The board profile of an ArC TWO's crossbar (`compile --profile board-arc2`): the backend
announces its cell kind (the default of `?array=`), converter bits, ADC ranges (the instrument's
three: 10.24 V over its 15 MOhm, 110 kOhm and 830 Ohm amplifiers), window, read voltage and
SET and gate limits. Rows and columns are the mapping's."""
BOARD = shipped_board(PROFILE)
SHORTEST_PULSE_S = load_board_profile(PROFILE).limits.pulse_width_s
"""The shortest pulse of the instrument's high-speed drivers: the profile's pulse width."""
LONGEST_PULSE_S = 1e-3
"""The longest pulse the backend sends, as the emulated board of the same devices
(emulator-default.toml)."""
RESET_MARGIN_V = 0.5
"""How far above the profile's RESET limit (the programming ramp's top) the backend lets a
RESET go, as the emulated board of the same devices (emulator-default.toml: 2.0 V over
board-default's 1.5 V); calibration's strongest RESETs are 0.9 of the board's limit."""
LIMITS = BoardLimits(v_set_max=BOARD.limits.v_set_max,
                     v_reset_max=BOARD.limits.v_reset_max + RESET_MARGIN_V,
                     v_gate_max=BOARD.limits.v_gate_max, v_read_max=BOARD.read_chain.v_read_max,
                     pulse_width_min_s=SHORTEST_PULSE_S, pulse_width_max_s=LONGEST_PULSE_S)
"""Safe limits for the devices (the instrument itself reaches +-10 V), checked before any
instrument call."""
DEFAULTS = BoardConfig(v_read_v=LIMITS.v_read_max, read_range_a=BOARD.read_chain.adc_ranges_a[1],
                       vmm_range_a=BOARD.read_chain.adc_ranges_a[1],
                       pulse_width_s=SHORTEST_PULSE_S)
READ_GATE_V = LIMITS.v_gate_max
"""Gate voltage of every row during reads and VMMs on a 1T1R array (transistors fully on)."""
VMM_SETTLE_S = 61e-6
"""The instrument's fixed waits in one VMM: 30 us after setting the row DACs, 1 us after the
current read, 30 us to ground the bit lines (plus 130 us whenever a channel's amplifier must be
re-prepared, and one USB round trip)."""
DEFAULT_KIND = BOARD.geometry.cell
"""The cell kind of `?array=` when none is given: the profile's."""
OPTIONS = ("firmware", "array", "mapping")


@dataclass(frozen=True)
class Arc2Port:
    """What an `arc2://ID?firmware=PATH&array=1T1R|passive&mapping=NAME|FILE` port names (the
    array kind in any case)."""

    instrument_id: int
    firmware: Path | None
    array_kind: str
    mapping: ChannelMapping


def parse_port(port: str) -> Arc2Port:
    """The parts of an arc2:// port; BadInput naming what is wrong."""
    parts, query = split_port_url(port, "arc2", OPTIONS)
    if not parts.netloc.isdigit():
        raise BadInput(f"{port}: the ArC TWO id after arc2:// must be a number such as 0")
    typed = query.get("array", [DEFAULT_KIND])[-1]
    kind = next((cell for cell in CELLS if cell.lower() == typed.lower()), None)
    if kind is None:
        raise BadInput(f"{port}: array must be one of {', '.join(CELLS)}, got {typed!r}")
    firmware = query.get("firmware", [""])[-1]
    mapping = load_mapping(query.get("mapping", [DEFAULT_MAPPING])[-1] or DEFAULT_MAPPING)
    return Arc2Port(int(parts.netloc), Path(firmware) if firmware else None, kind, mapping)


def _pyarc2() -> Any:
    """The pyarc2 module; BadInput when it is not installed."""
    return require("pyarc2")


def check_wiring(mapping: ChannelMapping) -> None:
    """BadInput unless the word lines are on libarc2's word channels and the bit lines on its
    bit channels (its whole-array reads and slices assume them)."""
    for what, lines, allowed, names in (("word", mapping.words, ALL_WORDS, "16-31, 48-63"),
                                        ("bit", mapping.bits, ALL_BITS, "0-15, 32-47")):
        stray = [(i, c) for i, c in enumerate(lines) if c not in allowed]
        if stray:
            i, c = stray[0]
            raise BadInput(f"ArC TWO mapping {mapping.name}: {what} line {i} is on channel {c}; "
                           f"libarc2 needs {what} lines on channels {names}")


class Arc2Board:
    """An ArC TWO as a `BoardLike` crossbar of one array wired by a channel mapping; open it
    with `Arc2Board.open` (or `drivers.open.open_board`)."""

    def __init__(self, instrument: Any, array_kind: str = DEFAULT_KIND, board_id: str = "ArC2-0",
                 firmware: str = "unknown", mapping: ChannelMapping | None = None) -> None:
        """`instrument`: a `pyarc2.Instrument` (or an object with the methods used here);
        `mapping`: the crossbar's wiring (default arc2control's default, resarray32)."""
        if array_kind not in CELLS:
            raise BadInput(f"array kind must be one of {', '.join(CELLS)}, got {array_kind!r}")
        self.mapping = mapping or load_mapping(DEFAULT_MAPPING)
        check_wiring(self.mapping)
        self._words = np.array(self.mapping.words)
        self._bits = np.array(self.mapping.bits)
        # device (r, c) in read_all(.., Cols) is at [bit index[c], word index[r]]
        self._read_at = (np.array([ALL_BITS.index(c) for c in self.mapping.bits]),
                         np.array([ALL_WORDS.index(c) for c in self.mapping.words]))
        self._pyarc2 = _pyarc2()
        self._arc = _Instrument(instrument, self._pyarc2.ArC2Error)
        self.array_kind = array_kind
        self.capabilities = Capabilities(on_board_loop=False, smu_route=False,
                                         pulse_gate="grouped" if array_kind == "1T1R" else "none")
        spec = BoardSpec(Geometry(1, self.mapping.rows, self.mapping.cols, array_kind),
                         ConductanceWindow(BOARD.window.g_min_siemens, BOARD.window.g_max_siemens),
                         BOARD.read_chain,  # a window as boards announce it: no compile tolerance
                         PulseLimits(LIMITS.v_set_max, LIMITS.v_reset_max, LIMITS.v_gate_max))
        self.info = BoardInfo(board_id, firmware, 0, spec, LIMITS.pulse_width_min_s,
                              LIMITS.pulse_width_max_s, 0, VMM_SETTLE_S, self.mapping.name)
        self.config = DEFAULTS
        self.vmm_current_sign: float | None = None
        """+1 or -1: the sign of the bit-line currents for positive row voltages, measured on
        the first VMM (None before)."""
        self._calls = 0
        self._pulses = 0
        self._gates: tuple[float, tuple[int, ...]] | None = None  # (SELH, raised selectors)
        self._started = time.monotonic()

    @classmethod
    def open(cls, port: str) -> Arc2Board:
        """Connect to the ArC TWO an arc2:// port names, loading its firmware."""
        target = parse_port(port)
        check_wiring(target.mapping)
        pyarc2 = _pyarc2()
        try:
            ids = list(pyarc2.find_ids())
        except pyarc2.ArC2Error as exc:
            raise PortMissing(f"{port}: cannot list ArC TWO instruments "
                              f"({_one_line(exc)})") from None
        except _NOT_FAULTS:
            raise
        except BaseException as exc:  # a panic in pyarc2
            raise LinkError(f"ArC TWO find_ids: {_describe(exc, ())}") from None
        if target.instrument_id not in ids:
            raise PortMissing(f"no ArC TWO with id {target.instrument_id} is attached "
                              f"(pyarc2.find_ids() lists {ids or 'none'})")
        if target.firmware is None or not target.firmware.is_file():
            raise BadInput(f"{port}: name the ArC TWO firmware file with ?firmware=PATH"
                           + (f" ({target.firmware} does not exist)" if target.firmware else ""))
        try:
            instrument = pyarc2.Instrument(target.instrument_id, str(target.firmware))
        except _NOT_FAULTS:
            raise
        except BaseException as exc:
            raise LinkError(f"ArC TWO {target.instrument_id}: "
                            f"{_describe(exc, pyarc2.ArC2Error)}") from None
        return cls(instrument, target.array_kind, f"ArC2-{target.instrument_id}",
                   f"pyarc2 {getattr(pyarc2, 'LIBARC2_VERSION', None) or '?'}, "
                   f"{target.firmware.name}", target.mapping)

    def close(self) -> None:
        """Leave every channel at 0 V."""
        self._arc.ground_all()
        self._run()

    def __enter__(self) -> Arc2Board:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def frames_sent(self) -> int:
        """Command buffers sent to the instrument (each one USB round trip)."""
        return self._calls

    def status(self) -> BoardStatus:
        """The settings and counters, in the serial board's form (no epoch, program or route)."""
        return BoardStatus(0, time.monotonic() - self._started, self.config, None, 0, 0, 0,
                           self._calls, 0, 0, self._pulses)

    # -- BoardLike --------------------------------------------------------------------------

    def configure(self, v_read_v: float | None = None, read_range_a: float | None = None,
                  vmm_range_a: float | None = None,
                  pulse_width_s: float | None = None) -> BoardConfig:
        """Change some settings (None keeps one); ranges round up to one of the ADC's."""
        changes = {"v_read_v": v_read_v, "pulse_width_s": pulse_width_s,
                   "read_range_a": smallest_range(self.info.adc_ranges_a, read_range_a),
                   "vmm_range_a": smallest_range(self.info.adc_ranges_a, vmm_range_a)}
        new = replace(self.config, **{k: v for k, v in changes.items() if v is not None})
        if not 0 < new.v_read_v <= LIMITS.v_read_max + LIMIT_SLACK_V:
            raise VoltageLimitError(ErrorCode.LIMIT, f"v_read_v must be within (0, "
                                                     f"{LIMITS.v_read_max}] V")
        if not LIMITS.pulse_width_min_s <= new.pulse_width_s <= LIMITS.pulse_width_max_s:
            raise VoltageLimitError(ErrorCode.LIMIT, f"pulse width must be within "
                                                     f"{LIMITS.pulse_width_min_s:g}.."
                                                     f"{LIMITS.pulse_width_max_s:g} s")
        self.config = new
        return new

    def set_pulses(self, array: int, v_set: np.ndarray | float, v_gate: np.ndarray | float,
                   mask: np.ndarray | None = None) -> int:
        """One SET pulse on every masked device; returns how many were pulsed."""
        return self._pulse(array, v_set, v_gate, mask, "SET", LIMITS.v_set_max, 1.0)

    def reset_pulses(self, array: int, v_reset: np.ndarray | float, v_gate: np.ndarray | float,
                     mask: np.ndarray | None = None) -> int:
        """One RESET pulse (negative polarity) on every masked device; as `set_pulses`."""
        return self._pulse(array, v_reset, v_gate, mask, "RESET", LIMITS.v_reset_max, -1.0)

    def read_array(self, array: int) -> np.ndarray:
        """Every device's conductance (rows, cols) S, one bit line biased at a time."""
        self._check_array(array)
        self._gates_for_reading()
        raw = np.asarray(self._arc.read_all(vread=self.config.v_read_v,
                                            order=self._pyarc2.BiasOrder.Cols), dtype=float)
        self._calls += 1
        if raw.size != len(ALL_BITS) * len(ALL_WORDS):
            raise ProtocolError(f"read_all returned {raw.size} values, not 32 x 32")
        bit_at, word_at = self._read_at
        raw = raw.reshape(len(ALL_BITS), len(ALL_WORDS))   # [bit channel, word channel]
        return np.abs(raw[np.ix_(bit_at, word_at)]).T / self.config.v_read_v

    def read_device(self, array: int, row: int, col: int) -> float:
        """One device's conductance, S."""
        self._check_array(array)
        if not (0 <= row < self.mapping.rows and 0 <= col < self.mapping.cols):
            raise BoardError(ErrorCode.BAD_ARGUMENT, f"device ({row}, {col}) outside "
                                                     f"{self.mapping.rows}x{self.mapping.cols}")
        self._gates_for_reading()
        word, bit = self.mapping.channels(row, col)
        current = self._arc.read_one(low=bit, high=word, vread=self.config.v_read_v)
        self._calls += 1
        return abs(float(current)) / self.config.v_read_v

    def vmm(self, array: int, v_rows: np.ndarray) -> np.ndarray:
        """Column currents (cols,) A for row voltages (rows,) V: v_rows @ G."""
        self._check_array(array)
        v_rows = np.asarray(v_rows, dtype=float)
        if v_rows.shape != (self.mapping.rows,):
            raise ValueError(f"v_rows must have shape ({self.mapping.rows},), not {v_rows.shape}")
        if not (np.isfinite(v_rows).all()
                and np.abs(v_rows).max() <= LIMITS.v_read_max + LIMIT_SLACK_V):
            raise VoltageLimitError(ErrorCode.LIMIT, f"row voltages must be within "
                                                     f"+-{LIMITS.v_read_max} V")
        self._gates_for_reading()
        if self.vmm_current_sign is None:
            self.vmm_current_sign = self._measure_vmm_sign()
        return self.vmm_current_sign * self._bit_currents(v_rows)

    def load_program(self, programs: list[LoopProgram]) -> None:
        """Refused: ArC TWO has no on-board loop."""
        raise Unsupported(_NO_LOOP)

    def run_sequence(self, inputs: np.ndarray) -> np.ndarray:
        """Refused: ArC TWO has no on-board loop."""
        raise Unsupported(_NO_LOOP)

    def route_smu(self, array: int | None, row: int | None = None,
                  col: int | None = None) -> None:
        """Refused for a device (ArC TWO has no SMU port); disconnecting is a no-op."""
        if array is not None:
            raise Unsupported("the ArC TWO backend has no SMU route (capability smu_route is "
                              "false): calibrate without --smu (on-array references)")

    # -- internals --------------------------------------------------------------------------

    def _run(self) -> None:
        """Send the command buffer and wait until the instrument has executed it."""
        self._arc.execute()
        self._arc.wait()
        self._calls += 1

    def _check_array(self, array: int) -> None:
        if array != 0:
            raise BoardError(ErrorCode.BAD_ARGUMENT, f"array {array} out of range 0..0 "
                                                     f"(ArC TWO has one crossbar)")

    def _bit_currents(self, v_rows: np.ndarray) -> np.ndarray:
        """The bit lines' currents (cols,) A as the instrument reports them, with word line r
        at +v_rows[r] and every other channel at 0 V."""
        self._arc.config_channels(input=list(zip(self.mapping.words, v_rows.tolist())), base=0.0)
        currents = np.asarray(self._arc.read_slice_open(highs=list(self.mapping.bits),
                                                        ground_after=True), dtype=float)
        self._calls += 1
        if currents.shape != (CHANNELS,):
            raise ProtocolError(f"read_slice_open returned {currents.shape} values, not one per "
                                f"channel ({CHANNELS})")
        return currents[self._bits]

    def _measure_vmm_sign(self) -> float:
        """The sign most bit lines report with every word line at +v_read_v."""
        currents = self._bit_currents(np.full(self.mapping.rows, self.config.v_read_v))
        positive, negative = int((currents > 0).sum()), int((currents < 0).sum())
        if positive == negative:
            raise ProtocolError(f"ArC TWO: with every word line at +{self.config.v_read_v:g} V, "
                                f"{positive} bit lines report positive and {negative} negative "
                                f"currents; cannot tell the instrument's current sign")
        return 1.0 if positive > negative else -1.0

    def _pulse(self, array: int, v: np.ndarray | float, v_gate: np.ndarray | float,
               mask: np.ndarray | None, name: str, v_max: float, polarity: float) -> int:
        """Check every masked voltage, then one masked slice per bit line and (voltage, gate):
        the bit line low, the slice's word lines high (`polarity` * voltage above it)."""
        self._check_array(array)
        shape = (self.mapping.rows, self.mapping.cols)
        mask = np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), shape)
        # on the serial board's 1 mV steps: the journal records what was sent
        volts = on_pulse_steps(np.broadcast_to(np.asarray(v, float), shape))
        gates = on_pulse_steps(np.broadcast_to(np.asarray(v_gate, float), shape))
        for values, top, what in ((volts, v_max, f"{name} voltage"),
                                  (gates, LIMITS.v_gate_max, "gate voltage")):
            bad = mask & ~((values >= 0) & (values <= top + LIMIT_SLACK_V))
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise VoltageLimitError(ErrorCode.LIMIT, f"{what} {values[row, col]:.3f} V at "
                                                         f"({row}, {col}) outside 0..{top} V; no "
                                                         f"device was pulsed")
        if not mask.any():
            return 0
        gated = self.array_kind == "1T1R"
        rows, cols = np.nonzero(mask)
        keys = np.stack([gates[rows, cols] if gated else np.zeros(rows.size), cols,
                         volts[rows, cols]], axis=1)
        nanos = int(round(self.config.pulse_width_s * 1e9))
        for gate, col, volt in np.unique(keys, axis=0):
            same = (cols == col) & (volts[rows, cols] == volt)
            if gated:
                same &= gates[rows, cols] == gate
            chosen = rows[same]
            if gated:
                self._set_gates(float(gate), tuple(chosen.tolist()))
            self._arc.pulse_slice_masked(chan=int(self._bits[int(col)]),
                                         voltage=float(polarity * volt), nanos=nanos,
                                         mask=self._words[chosen].tolist())
        self._run()
        self._pulses += int(mask.sum())
        return int(mask.sum())

    def _gates_for_reading(self) -> None:
        """Every row's transistors on (1T1R); nothing on a passive array."""
        if self.array_kind == "1T1R":
            self._set_gates(READ_GATE_V, tuple(range(self.mapping.rows)))

    def _set_gates(self, v_gate: float, rows: tuple[int, ...]) -> None:
        """Selectors of `rows` (selector k: word line k) high at `v_gate`, the others low at
        0 V (queued, not sent)."""
        if self._gates == (v_gate, rows):
            return
        aux = self._pyarc2.AuxDACFn
        if self._gates is None or self._gates[0] != v_gate:
            self._arc.config_aux_channels(voltages=[(aux.SELL, 0.0), (aux.SELH, v_gate)])
        self._arc.config_selectors(selectors=list(rows))
        self._gates = (v_gate, rows)


_NOT_FAULTS = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""What an instrument call lets through; anything else it raises is an instrument fault."""


class _Instrument:
    """The instrument's methods; an `ArC2Error`, an `OSError` (USB) or a panic in pyarc2 (pyo3's
    PanicException, a BaseException but not an Exception) becomes a `LinkError`, one line naming
    the call (exit code 3); `_NOT_FAULTS` and other exceptions (bugs) pass through."""

    def __init__(self, instrument: Any, error: type[Exception]) -> None:
        self._instrument, self._error = instrument, error

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._instrument, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except _NOT_FAULTS:
                raise
            except BaseException as exc:
                if isinstance(exc, Exception) and not isinstance(exc, (self._error, OSError)):
                    raise  # a bug in how it was called, not the instrument's fault
                raise LinkError(f"ArC TWO {name}: {_describe(exc, self._error)}") from None
        return call


def _describe(exc: BaseException, plain: type[BaseException] | tuple) -> str:
    """`exc` in one line; prefixed with its type unless it is a `plain` one."""
    text = _one_line(exc)
    return text if isinstance(exc, plain) else f"{type(exc).__name__}: {text}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_NO_LOOP = ("the ArC TWO backend has no on-board loop (capability on_board_loop is false): "
            "use host mode (infer --mode host)")
