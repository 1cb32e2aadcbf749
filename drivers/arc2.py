"""The ArC TWO backend: `BoardLike` on an ArC TWO (ArC Instruments) through its API, pyarc2.

    with open_board("arc2://0?firmware=/path/to/fw.bin") as board:   # drivers.open
        g = board.read_array(0)                                      # (32, 32) S

Wiring. The 64 channels form one 32x32 crossbar in libarc2's standard order: rows are the word
lines (channels 16-31, 48-63), columns the bit lines (0-15, 32-47), so a whole-array read comes
as (rows, cols). A device sees its bit line minus its word line ("high" minus "low" in pyarc2):
reads bias the word at -v_read and measure the bit lines at 0 V; a VMM drives word r at -v_r
(`config_channels`, every other channel at 0 V) and measures the bit lines (`read_slice_open`),
so its currents carry the reads' sign; SET pulses are positive and RESET pulses negative
(`pulse_slice_masked`, the word low, the masked bits high).

Gates. On a 1T1R array (`?array=1t1r`, the default) selector k drives the gates of row k. A
pulse batch is split into masked slices, one per row and (voltage, gate) pair: each raises the
selectors' high level (`config_aux_channels`, SELH) to its gate voltage and only its row's
selector (`config_selectors`). Reads and VMMs raise every selector at `READ_GATE_V`. On a passive
array (`?array=passive`) the selectors are left alone and gate voltages only checked.

Limits are checked before any instrument call; what ArC TWO cannot do (an on-board loop, an SMU
route) is in `capabilities` and refused with one line (`Unsupported`). The instrument auto-ranges
its 18-bit current ADC, so the configured ranges only round up to one of its three.

Tests drive the backend without hardware by handing the constructor an object with the pyarc2
`Instrument` methods used here (tests/arc2_standin.py); the `arc2://` opener always calls pyarc2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imssa_hw.drivers.board_like import Capabilities, smallest_range
from imssa_hw.drivers.errors import (BoardError, LinkError, PortMissing, ProtocolError,
                                     Unsupported, VoltageLimitError)
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import (BoardConfig, BoardInfo, BoardLimits, BoardStatus,
                                       ErrorCode)
from imssa_hw.drivers.port_url import split_port_url
from imssa_hw.errors import BadInput

SCHEME = "arc2://"
WORDS = np.array([*range(16, 32), *range(48, 64)])
"""Channel of each row (word line)."""
BITS = np.array([*range(0, 16), *range(32, 48)])
"""Channel of each column (bit line), in ascending order."""
_WORD_LIST, _BIT_LIST = WORDS.tolist(), BITS.tolist()
CHANNELS = 64
ADC_BITS = 18
ADC_RANGES_A = (10.24 / 15e6, 10.24 / 110e3, 10.24 / 830)
"""The current ranges: 10.24 V full scale over the 15 MOhm, 110 kOhm and 830 Ohm TIAs."""
DAC_BITS = 10
"""Row-voltage steps the toolchain may assume: 0.2 V / 511 = 0.39 mV, coarser than the
instrument's 16-bit +-10 V DACs (0.31 mV)."""
LIMITS = BoardLimits(v_set_max=3.5, v_reset_max=2.0, v_gate_max=5.5, v_read_max=0.2,
                     pulse_width_min_s=40e-9, pulse_width_max_s=1e-3)
"""Safe limits for the devices (the instrument itself reaches +-10 V): those of the 1T1R
HfOx devices the toolchain models (emulator-default.toml); 40 ns is the shortest pulse of
the instrument's high-speed drivers."""
DEFAULTS = BoardConfig(v_read=0.2, read_range_a=ADC_RANGES_A[1], vmm_range_a=ADC_RANGES_A[1],
                       pulse_width_s=40e-9)
G_WINDOW_SIEMENS = (1e-6, 150e-6)
READ_GATE_V = LIMITS.v_gate_max
"""Gate voltage of every row during reads and VMMs on a 1T1R array (transistors fully on)."""
VMM_SETTLE_S = 61e-6
"""The instrument's fixed waits in one VMM: 30 us after setting the row DACs, 1 us after the
current read, 30 us to ground the bit lines (plus 130 us whenever a channel's amplifier must be
re-prepared, and one USB round trip)."""
V_TOLERANCE = 1e-6
"""Slack on limit checks, as the emulated board's."""
ARRAY_KINDS = ("1t1r", "passive")
OPTIONS = ("firmware", "array")


@dataclass(frozen=True)
class Arc2Port:
    """What an `arc2://ID?firmware=PATH&array=1t1r|passive` port names."""

    instrument_id: int
    firmware: Path | None
    array_kind: str


def parse_port(port: str) -> Arc2Port:
    """The parts of an arc2:// port; BadInput naming what is wrong."""
    parts, query = split_port_url(port, "arc2", OPTIONS)
    if not parts.netloc.isdigit():
        raise BadInput(f"{port}: the ArC TWO id after arc2:// must be a number such as 0")
    kind = query.get("array", ["1t1r"])[-1].lower()
    if kind not in ARRAY_KINDS:
        raise BadInput(f"{port}: array must be one of {', '.join(ARRAY_KINDS)}, got {kind!r}")
    firmware = query.get("firmware", [""])[-1]
    return Arc2Port(int(parts.netloc), Path(firmware) if firmware else None, kind)


def _pyarc2() -> Any:
    """The pyarc2 module; BadInput when it is not installed."""
    try:
        import pyarc2
    except ImportError:
        raise BadInput("arc2:// ports need pyarc2: pip install 'imssa-hw[arc2]'") from None
    return pyarc2


class Arc2Board:
    """An ArC TWO as a `BoardLike` crossbar of one 32x32 array; open it with `Arc2Board.open`
    (or `drivers.open.open_board`)."""

    def __init__(self, instrument: Any, array_kind: str = "1t1r", board_id: str = "ArC2-0",
                 firmware: str = "unknown") -> None:
        """`instrument`: a `pyarc2.Instrument` (or an object with the methods used here)."""
        if array_kind not in ARRAY_KINDS:
            raise BadInput(f"array kind must be one of {', '.join(ARRAY_KINDS)}, got {array_kind!r}")
        self._pyarc2 = _pyarc2()
        self._arc = _Instrument(instrument, self._pyarc2.ArC2Error)
        self.array_kind = array_kind
        self.capabilities = Capabilities(on_board_loop=False, smu_route=False,
                                         pulse_gate="grouped" if array_kind == "1t1r" else "none")
        self.info = BoardInfo(board_id, firmware, 0, 1, len(WORDS), len(BITS), LIMITS, ADC_BITS,
                              DAC_BITS, ADC_RANGES_A, G_WINDOW_SIEMENS, 0, VMM_SETTLE_S)
        self.config = DEFAULTS
        self._calls = 0
        self._pulses = 0
        self._gates: tuple[float, tuple[int, ...]] | None = None  # (SELH, raised selectors)
        self._started = time.monotonic()

    @classmethod
    def open(cls, port: str) -> Arc2Board:
        """Connect to the ArC TWO an arc2:// port names, loading its firmware."""
        target = parse_port(port)
        pyarc2 = _pyarc2()
        try:
            ids = list(pyarc2.find_ids())
        except pyarc2.ArC2Error as exc:
            raise PortMissing(f"{port}: cannot list ArC TWO instruments ({exc})") from None
        if target.instrument_id not in ids:
            raise PortMissing(f"no ArC TWO with id {target.instrument_id} is attached "
                              f"(pyarc2.find_ids() lists {ids or 'none'})")
        if target.firmware is None or not target.firmware.is_file():
            raise BadInput(f"{port}: name the ArC TWO firmware file with ?firmware=PATH"
                           + (f" ({target.firmware} does not exist)" if target.firmware else ""))
        try:
            instrument = pyarc2.Instrument(target.instrument_id, str(target.firmware))
        except pyarc2.ArC2Error as exc:
            raise LinkError(f"ArC TWO {target.instrument_id}: {exc}") from None
        return cls(instrument, target.array_kind, f"ArC2-{target.instrument_id}",
                   f"pyarc2 {getattr(pyarc2, 'LIBARC2_VERSION', None) or '?'}, "
                   f"{target.firmware.name}")

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

    def configure(self, v_read: float | None = None, read_range_a: float | None = None,
                  vmm_range_a: float | None = None,
                  pulse_width_s: float | None = None) -> BoardConfig:
        """Change some settings (None keeps one); ranges round up to one of the ADC's."""
        changes = {"v_read": v_read, "pulse_width_s": pulse_width_s,
                   "read_range_a": smallest_range(ADC_RANGES_A, read_range_a),
                   "vmm_range_a": smallest_range(ADC_RANGES_A, vmm_range_a)}
        new = replace(self.config, **{k: v for k, v in changes.items() if v is not None})
        if not 0 < new.v_read <= LIMITS.v_read_max + V_TOLERANCE:
            raise VoltageLimitError(ErrorCode.LIMIT, f"v_read must be within (0, "
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
        """Every device's conductance (rows, cols) S, one word line biased at a time."""
        self._check_array(array)
        self._gates_for_reading()
        currents = self._arc.read_all(vread=self.config.v_read,
                                      order=self._pyarc2.BiasOrder.Rows)
        self._calls += 1
        return np.asarray(currents, dtype=float).reshape(len(WORDS), len(BITS)) / self.config.v_read

    def read_device(self, array: int, row: int, col: int) -> float:
        """One device's conductance, S."""
        self._check_array(array)
        if not (0 <= row < len(WORDS) and 0 <= col < len(BITS)):
            raise BoardError(ErrorCode.BAD_ARGUMENT, f"device ({row}, {col}) outside "
                                                     f"{len(WORDS)}x{len(BITS)}")
        self._gates_for_reading()
        current = self._arc.read_one(low=int(WORDS[row]), high=int(BITS[col]),
                                     vread=self.config.v_read)
        self._calls += 1
        return float(current) / self.config.v_read

    def vmm(self, array: int, v_rows: np.ndarray) -> np.ndarray:
        """Column currents (cols,) A for row voltages (rows,) V."""
        self._check_array(array)
        v_rows = np.asarray(v_rows, dtype=float)
        if v_rows.shape != (len(WORDS),):
            raise ValueError(f"v_rows must have shape ({len(WORDS)},), not {v_rows.shape}")
        if not (np.isfinite(v_rows).all()
                and np.abs(v_rows).max() <= LIMITS.v_read_max + V_TOLERANCE):
            raise VoltageLimitError(ErrorCode.LIMIT, f"row voltages must be within "
                                                     f"+-{LIMITS.v_read_max} V")
        self._gates_for_reading()
        self._arc.config_channels(input=list(zip(_WORD_LIST, (-v_rows).tolist())), base=0.0)
        currents = np.asarray(self._arc.read_slice_open(highs=_BIT_LIST, ground_after=True),
                              dtype=float)
        self._calls += 1
        if currents.shape != (CHANNELS,):
            raise ProtocolError(f"read_slice_open returned {currents.shape} values, not one per "
                                f"channel ({CHANNELS})")
        return currents[BITS]

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
                                                     f"(ArC TWO has one 32x32 crossbar)")

    def _pulse(self, array: int, v: np.ndarray | float, v_gate: np.ndarray | float,
               mask: np.ndarray | None, name: str, v_max: float, polarity: float) -> int:
        """Check every masked voltage, then one masked slice per row and (voltage, gate)."""
        self._check_array(array)
        shape = (len(WORDS), len(BITS))
        mask = np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), shape)
        volts = np.round(np.broadcast_to(np.asarray(v, float), shape), 3)   # 1 mV steps,
        gates = np.round(np.broadcast_to(np.asarray(v_gate, float), shape), 3)  # as serial
        for values, top, what in ((volts, v_max, f"{name} voltage"),
                                  (gates, LIMITS.v_gate_max, "gate voltage")):
            bad = mask & ~((values >= 0) & (values <= top + V_TOLERANCE))
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise VoltageLimitError(ErrorCode.LIMIT, f"{what} {values[row, col]:.3f} V at "
                                                         f"({row}, {col}) outside 0..{top} V; no "
                                                         f"device was pulsed")
        if not mask.any():
            return 0
        gated = self.array_kind == "1t1r"
        rows, cols = np.nonzero(mask)
        keys = np.stack([gates[rows, cols] if gated else np.zeros(rows.size), rows,
                         volts[rows, cols]], axis=1)
        nanos = int(round(self.config.pulse_width_s * 1e9))
        for gate, row, volt in np.unique(keys, axis=0):
            row = int(row)
            if gated:
                self._set_gates(float(gate), (row,))
            same = (rows == row) & (volts[rows, cols] == volt)
            if gated:
                same &= gates[rows, cols] == gate
            chosen = cols[same]
            self._arc.pulse_slice_masked(chan=int(WORDS[row]), voltage=float(polarity * volt),
                                         nanos=nanos, mask=BITS[chosen].tolist())
        self._run()
        self._pulses += int(mask.sum())
        return int(mask.sum())

    def _gates_for_reading(self) -> None:
        """Every row's transistors on (1T1R); nothing on a passive array."""
        if self.array_kind == "1t1r":
            self._set_gates(READ_GATE_V, tuple(range(len(WORDS))))

    def _set_gates(self, v_gate: float, rows: tuple[int, ...]) -> None:
        """Selectors of `rows` high at `v_gate`, the others low at 0 V (queued, not sent)."""
        if self._gates == (v_gate, rows):
            return
        aux = self._pyarc2.AuxDACFn
        if self._gates is None or self._gates[0] != v_gate:
            self._arc.config_aux_channels(voltages=[(aux.SELL, 0.0), (aux.SELH, v_gate)])
        self._arc.config_selectors(selectors=list(rows))
        self._gates = (v_gate, rows)


class _Instrument:
    """The instrument's methods, its errors raised as `LinkError` (one line, exit code 3)."""

    def __init__(self, instrument: Any, error: type[Exception]) -> None:
        self._instrument, self._error = instrument, error

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._instrument, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except self._error as exc:
                raise LinkError(f"ArC TWO {name}: {exc}") from None
        return call


_NO_LOOP = ("the ArC TWO backend has no on-board loop (capability on_board_loop is false): "
            "use host mode (infer --mode host)")
