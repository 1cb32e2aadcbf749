"""The board parameter tree: frozen dataclasses in SI units, validated on construction
(`ValueError` naming the quantity; loaders turn it into their own error with the file or reply
it came from)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

CELLS = ("1T1R", "passive")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Geometry:
    """Arrays of rows x cols cells (rows take the input voltages, columns give the currents)."""

    arrays: int
    rows: int
    cols: int
    cell: str = "1T1R"
    """"1T1R" (a transistor gate per device) or "passive"."""

    def __post_init__(self) -> None:
        _require(min(self.arrays, self.rows, self.cols) >= 1,
                 f"a board needs at least one array of one row and column, got "
                 f"{self.arrays} x {self.rows} x {self.cols}")
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
        _require(0 <= self.g_min_siemens < self.g_max_siemens,
                 f"the conductance window needs 0 <= g_min < g_max, got "
                 f"{self.g_min_siemens * 1e6:g} .. {self.g_max_siemens * 1e6:g} uS")
        _require(0 <= self.tolerance_siemens < self.g_max_siemens - self.g_min_siemens,
                 f"the tolerance ({self.tolerance_siemens * 1e6:g} uS) must be smaller than the "
                 f"window ({(self.g_max_siemens - self.g_min_siemens) * 1e6:g} uS)")

    def dg(self, bits: int) -> float:
        """Conductance per level for `bits` bits per device: (G_max - G_min) / (2**bits - 1), S."""
        return (self.g_max_siemens - self.g_min_siemens) / (2**bits - 1)


@dataclass(frozen=True)
class ReadChainSpec:
    """Row DACs and column TIA/ADCs: the largest row voltage, converter bits, and the selectable
    ADC full scales (+-, A)."""

    v_read_max: float
    dac_bits: int
    """Signed row DAC: steps of v_read_max / (2**(dac_bits-1) - 1)."""
    adc_bits: int
    """Signed ADC: codes -(2**(adc_bits-1)) .. 2**(adc_bits-1)-1 span -range .. +range."""
    adc_ranges_a: tuple[float, ...]

    def __post_init__(self) -> None:
        _require(0 < self.v_read_max, f"v_read_max must be > 0 V, got {self.v_read_max:g}")
        _require(2 <= self.dac_bits <= 24 and 2 <= self.adc_bits <= 24,
                 f"dac_bits and adc_bits must be within 2..24, got {self.dac_bits}, {self.adc_bits}")
        ranges = list(self.adc_ranges_a)
        _require(bool(ranges) and all(r > 0 and math.isfinite(r) for r in ranges)
                 and ranges == sorted(set(ranges)),
                 "the ADC ranges must be positive, distinct and increasing")

    def adc_lsb_a(self, range_a: float) -> float:
        """Current of one ADC code at full scale `range_a`."""
        return range_a / 2 ** (self.adc_bits - 1)

    @property
    def dac_lsb_v(self) -> float:
        """Voltage of one row-DAC step."""
        return self.v_read_max / (2 ** (self.dac_bits - 1) - 1)


@dataclass(frozen=True)
class PulseLimits:
    """The largest SET, RESET and gate voltages a pulse may use, V."""

    v_set_max: float
    v_reset_max: float
    v_gate_max: float

    def __post_init__(self) -> None:
        _require(min(self.v_set_max, self.v_reset_max, self.v_gate_max) > 0,
                 "the SET, RESET and gate voltage limits must be > 0 V")

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

    def misfits(self, board: BoardSpec) -> list[str]:
        """What a deployment compiled for this spec needs that `board` does not offer (empty
        when it fits): the same geometry."""
        mine, theirs = self.geometry, board.geometry
        if mine.shape != theirs.shape:
            return [f"the deployment is for {mine.arrays} arrays of {mine.rows}x{mine.cols}; "
                    f"the board has {theirs.arrays} arrays of {theirs.rows}x{theirs.cols}"]
        return []
