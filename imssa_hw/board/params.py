"""The board parameter tree: frozen dataclasses in SI units, validated on construction against
one table of ranges, `RANGES` (`ValueError` naming the quantity; loaders turn it into their own
error with the file or reply it came from)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from imssa_hw.board import converters

CELLS = ("1T1R", "passive")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Bounds:
    """The values one board quantity may take: `low` .. `high`, both included, SI units."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        """Whether `value` is within the bounds (NaN never is)."""
        return self.low <= value <= self.high

    def check(self, name: str, value: float, per_si: float = 1.0) -> None:
        """ValueError, in the one shape every loader gives, unless `value` is within the bounds
        (NaN never is); `value` is in units of `per_si` per SI unit (1e6: uS), and the bounds
        are said in them too."""
        if value / per_si not in self:
            raise ValueError(f"{name} = {value} is impossible (allowed {self.low * per_si:.12g} .. "
                             f"{self.high * per_si:.12g})")


_BITS = Bounds(2, 24)
"""Converter bits. 2: a signed converter needs a sign and one magnitude bit (with 1 there is no
positive ADC code, and a row DAC of 2**0 - 1 = 0 steps). 24: the widest converters made
(sigma-delta), and the widest grid the wire's float32 row voltages and sequence inputs hold
exactly. A board on the serial protocol has at most 15 ADC bits, its codes travel as int16
(`drivers.messages.WIRE_ADC_BITS`); the ArC TWO, off the wire, has 18."""
PULSE_STEPS_PER_V = 1000
"""Pulse requests carry their voltages as int16 millivolts (docs/protocol.md): every pulse
voltage is a whole number of these steps (`on_pulse_steps`)."""
PULSE_STEPS_MAX = 32767
"""The most steps an int16 holds: 32.767 V."""


def on_pulse_steps(values_v: np.ndarray | float) -> np.ndarray:
    """`values_v` rounded to whole pulse voltage steps (1 mV), V: what a pulse request carries."""
    return np.rint(np.asarray(values_v, dtype=float) * PULSE_STEPS_PER_V) / PULSE_STEPS_PER_V


_VOLTS = Bounds(1 / PULSE_STEPS_PER_V, PULSE_STEPS_MAX / PULSE_STEPS_PER_V)
"""Voltage limits (SET, RESET, gate; v_read_max, which stays below SET and RESET): nothing
beyond the pulse requests' largest voltage can be asked for, and a limit under one step allows
no pulse at all."""
_SECONDS = Bounds(1e-9, 1.0)
"""Pulse widths: the ArC TWO takes them in whole nanoseconds; a second is DC stress, not a
programming pulse."""
_SIEMENS = Bounds(0.0, 0.1)
"""Conductances of the window: above 0.1 S (under 10 Ohm) a device is a short, not a state
(the shipped devices span 1-180 uS)."""

RANGES: dict[str, Bounds] = {
    # Every request that names an array carries its index as a u8 (docs/protocol.md); the one
    # backend off the wire (the ArC TWO) has one array.
    "arrays": Bounds(1, 256),
    # LOAD_PROGRAM counts a program's rows, one per row of its array, in a u16.
    "rows": Bounds(1, 65535),
    # A loop program names its output columns as int16 (-1: none), so columns 0 .. 32767.
    "cols": Bounds(1, 32768),
    # A whole-array pulse request (4.125 bytes a device) must fit the 64 MiB frame
    # (`drivers.framing.MAX_FRAME_BYTES`) even when byte stuffing doubles it; 2**23 would not.
    "rows x cols": Bounds(1, 1 << 22),
    "adc_bits": _BITS,
    "dac_bits": _BITS,
    # TIA/ADC full scales, A. Nothing on the wire bounds them (JSON floats); 1 nA .. 1 A holds
    # every crossbar read chain by decades (the ArC TWO's 0.68 uA .. 12.3 mA, the shipped
    # boards' 5 uA .. 10.24 mA) and refuses what can only be a unit mistake.
    "adc_ranges_a": Bounds(1e-9, 1.0),
    "v_read_max": _VOLTS,
    "v_set_max": _VOLTS,
    "v_reset_max": _VOLTS,
    "v_gate_max": _VOLTS,
    "pulse_width_s": _SECONDS,
    "pulse_width_min_s": _SECONDS,
    "pulse_width_max_s": _SECONDS,
    "g_min_siemens": _SIEMENS,
    "g_max_siemens": _SIEMENS,
    "tolerance_siemens": _SIEMENS,
    # A read's noise relative to the conductance it reads (sigma / G): at 1 the noise is as
    # large as the signal; the shipped boards' are 0-2 %.
    "read_noise_rel": Bounds(0.0, 1.0),
}
"""What each board quantity may be, by its attribute name: the one table every loader (the
compiler's and the emulator's profiles, a board's identify reply, calibration and defect files)
checks against, through the dataclasses below or `Bounds.check`."""

SAME = 1e-9
"""Relative difference within which two values of a board count as the same (a value that went
through a file and back may differ in its last digits)."""
WINDOW_SLACK = 0.05
"""How far (relative) a deployment's window may reach past the window a board announces, at
either end: the announced window is nominal (board-default programs up to 155 uS on emulated
boards that announce 1-150 uS; their devices SET up to about 180 uS)."""


def check_ranges(obj: object, *names: str) -> None:
    """`RANGES[name].check` for each attribute `name` of `obj` (each item of a tuple)."""
    for name in names:
        value = getattr(obj, name)
        for item in value if isinstance(value, tuple) else (value,):
            RANGES[name].check(name, item)


def max_level(bits: int) -> int:
    """The largest level of a device that holds `bits` bits of a weight: 2**bits - 1 (its levels
    are 0 .. that, G_min .. G_max)."""
    return 2**bits - 1


@dataclass(frozen=True)
class Geometry:
    """Arrays of rows x cols cells (rows take the input voltages, columns give the currents)."""

    arrays: int
    rows: int
    cols: int
    cell: str = "1T1R"
    """"1T1R" (a transistor gate per device) or "passive"."""

    def __post_init__(self) -> None:
        check_ranges(self, "arrays", "rows", "cols")
        RANGES["rows x cols"].check("rows x cols", self.rows * self.cols)
        _require(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.arrays, self.rows, self.cols


@dataclass(frozen=True)
class ConductanceWindow:
    """The programmable window, and the write-verify tolerance within which a device counts as on
    its target (0 where nobody chose one, as in what a board announces)."""

    g_min_siemens: float
    g_max_siemens: float
    tolerance_siemens: float = 0.0

    def __post_init__(self) -> None:
        check_ranges(self, "g_min_siemens", "g_max_siemens", "tolerance_siemens")
        _require(self.g_min_siemens < self.g_max_siemens,
                 f"the conductance window needs 0 <= g_min < g_max, got "
                 f"{self.g_min_siemens * 1e6:g} .. {self.g_max_siemens * 1e6:g} uS")
        _require(self.tolerance_siemens < self.g_max_siemens - self.g_min_siemens,
                 f"the tolerance ({self.tolerance_siemens * 1e6:g} uS) must be smaller than the "
                 f"window ({(self.g_max_siemens - self.g_min_siemens) * 1e6:g} uS)")

    def dg(self, bits: int) -> float:
        """Conductance per level for `bits` bits per device: (G_max - G_min) / max_level, S."""
        return (self.g_max_siemens - self.g_min_siemens) / max_level(bits)


@dataclass(frozen=True)
class ReadChainSpec:
    """Row DACs and column TIA/ADCs: the largest row voltage, converter bits, and the selectable
    ADC full scales (+-, A)."""

    v_read_max: float
    dac_bits: int
    """Signed row DAC (`converters`: its codes and steps)."""
    adc_bits: int
    """Signed ADC (`converters`: its codes span -range .. +range)."""
    adc_ranges_a: tuple[float, ...]

    def __post_init__(self) -> None:
        check_ranges(self, "v_read_max", "dac_bits", "adc_bits", "adc_ranges_a")
        ranges = list(self.adc_ranges_a)
        _require(bool(ranges) and ranges == sorted(set(ranges)),
                 "the ADC ranges must be positive, distinct and increasing")

    @property
    def adc_full_scale_codes(self) -> int:
        """m: the ADC's codes are -m .. m - 1."""
        return converters.adc_full_scale_codes(self.adc_bits)

    def adc_lsb_a(self, range_a: float) -> float:
        """Current of one ADC code at full scale `range_a`."""
        return converters.adc_lsb_a(range_a, self.adc_bits)

    def adc_saturated(self, currents_a: np.ndarray, range_a: float) -> np.ndarray:
        """Whether each current the ADC reported at full scale `range_a` sits at an end of its
        scale, where a larger current reads too."""
        return converters.adc_saturated(currents_a, range_a, self.adc_bits)

    @property
    def dac_lsb_v(self) -> float:
        """Voltage of one row-DAC step."""
        return converters.dac_lsb_v(self.v_read_max, self.dac_bits)

    def holds(self, range_a: float, lsb_a: float) -> bool:
        """Whether one of the ranges holds +-`range_a` with codes of `lsb_a` or finer (what a
        board asked for `range_a` rounds up to must not clip, nor count coarser)."""
        return any(not _below(r, range_a) and not _below(lsb_a, self.adc_lsb_a(r))
                   for r in self.adc_ranges_a)


@dataclass(frozen=True)
class PulseLimits:
    """The largest SET, RESET and gate voltages a pulse may use, V."""

    v_set_max: float
    v_reset_max: float
    v_gate_max: float

    def __post_init__(self) -> None:
        check_ranges(self, "v_set_max", "v_reset_max", "v_gate_max")

    def tightest(self, other: PulseLimits | None) -> PulseLimits:
        """The lower of each limit of `self` and `other` (None: `self`'s)."""
        if other is None:
            return PulseLimits(self.v_set_max, self.v_reset_max, self.v_gate_max)
        return PulseLimits(min(self.v_set_max, other.v_set_max),
                           min(self.v_reset_max, other.v_reset_max),
                           min(self.v_gate_max, other.v_gate_max))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class BoardSpec:
    """A board: geometry, conductance window, read chain and pulse limits."""

    geometry: Geometry
    window: ConductanceWindow
    read_chain: ReadChainSpec
    limits: PulseLimits

    def __post_init__(self) -> None:
        _require(self.read_chain.v_read_max < min(self.limits.v_set_max, self.limits.v_reset_max),
                 f"v_read_max ({self.read_chain.v_read_max:g} V) must stay below the SET and "
                 f"RESET limits ({self.limits.v_set_max:g} V, {self.limits.v_reset_max:g} V) or "
                 f"reads would disturb the devices")

    def misfits(self, board: BoardSpec, ranges_a: Sequence[float] | None = None) -> list[str]:
        """What a deployment compiled for this spec needs that `board` does not offer, one phrase
        each (empty when it fits). The geometry must be the same (the targets and loop programs
        address every cell), and a deployment for passive cells needs a passive board (it
        programs without gates); one for 1T1R cells fits a passive board, whose gates there are
        none to drive. The rest may be finer or more permissive on the board, never coarser or
        tighter: the ADC bits, and for every TIA range the deployment uses (`ranges_a`; None:
        every range of this spec, any of which the compiler could choose) a board range that
        holds it (the board rounds up to one) with an ADC step as fine; the row-DAC step;
        v_read_max (the rows' reach); the SET, RESET and gate limits programming ramps up to;
        the conductance window (within WINDOW_SLACK)."""
        mine, theirs = self.geometry, board.geometry
        found = []
        if mine.shape != theirs.shape:
            found.append(f"the deployment is for {mine.arrays} arrays of {mine.rows}x{mine.cols}, "
                         f"the board has {theirs.arrays} arrays of {theirs.rows}x{theirs.cols}")
        if mine.cell == "passive" and theirs.cell != "passive":
            found.append(f"the deployment is for passive cells, the board's are {theirs.cell}")
        need, have = self.read_chain, board.read_chain
        used = need.adc_ranges_a if ranges_a is None else sorted(set(ranges_a))
        if have.adc_bits < need.adc_bits:
            found.append(f"the board's ADCs have {have.adc_bits} bits, the deployment needs "
                         f"{need.adc_bits}")
        elif coarse := [r for r in used if not have.holds(r, need.adc_lsb_a(r))]:
            listed = ", ".join(f"{r * 1e6:g}" for r in coarse)
            found.append(f"the board has no TIA range holding {listed} uA with an ADC step as "
                         f"fine as the deployment's")
        if _below(need.dac_lsb_v, have.dac_lsb_v):
            found.append(f"the board's row DACs step {have.dac_lsb_v * 1e3:.3g} mV, the "
                         f"deployment needs {need.dac_lsb_v * 1e3:.3g} mV or finer")
        if _below(have.v_read_max, need.v_read_max):
            found.append(f"the board's row voltages stop at {have.v_read_max:g} V, the "
                         f"deployment's reach {need.v_read_max:g} V")
        for name, what in (("v_set_max", "SET"), ("v_reset_max", "RESET"), ("v_gate_max", "gate")):
            limit, needed = getattr(board.limits, name), getattr(self.limits, name)
            if _below(limit, needed):
                found.append(f"the board's {what} limit is {limit:g} V, the deployment programs "
                             f"up to {needed:g} V")
        window, nominal = self.window, board.window
        if (window.g_min_siemens < nominal.g_min_siemens * (1 - WINDOW_SLACK)
                or window.g_max_siemens > nominal.g_max_siemens * (1 + WINDOW_SLACK)):
            found.append(f"the deployment's window {_us(window)} reaches beyond the board's "
                         f"{_us(nominal)}")
        return found


def _below(value: float, other: float) -> bool:
    """Whether `value` is below `other` by more than `SAME`."""
    return value < other * (1 - SAME)


def _us(window: ConductanceWindow) -> str:
    return f"{window.g_min_siemens * 1e6:g}-{window.g_max_siemens * 1e6:g} uS"
