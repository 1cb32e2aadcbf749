"""Calibration data of one board (`calib.json`) and the corrections it gives.

Read-chain model, per array and column c (what the board reports vs the truth):

    board read   g_read  = read_gain[c] * g_true + read_offset_siemens[c]      (reads at v_read_v on read_range_a)
    board VMM    i_board = vmm_gain[c]  * i_true + vmm_offset_a[c]       (VMMs on vmm_range_a)

The offset comes from the column's TIA and ADC: a fixed number of ADC codes whatever the range
(as on the HPE boards' TIAs and in the emulator). So an offset measured as a conductance at
(v_read_v, read_range_a) is an offset current read_offset_siemens * v_read_v on that range, and scales
with the ADC range: on another range R it is that current times R / read_range_a; as a
conductance at another read voltage v it is divided by v / v_read_v. VMM offsets and gains are
measured directly (all rows at 0 V; then all rows driven) when calibration ran the VMM step;
otherwise the read chain's gain and (range-scaled) offset are used for VMM outputs too.

`calib.json` is JSON only (no pickles): {"format": "imssa-hw-calibration", "version": 1, ...}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from imssa_hw.board.converters import adc_lsb_a
from imssa_hw.board.params import RANGES, BoardSpec
from imssa_hw.board.tables import (Field, board_spec, board_tables, geometry_from_dict,
                                   spec_changes)
from imssa_hw.calibration.curves import ResetCurve, SetCurve
from imssa_hw.errors import BadInput
from imssa_hw.files import read_json, write_json

FORMAT = "imssa-hw-calibration"
VERSION = 1
FILENAME = "calib.json"


class Reference(StrEnum):
    """What the read chain was calibrated against."""

    SMU = "smu"
    """True conductances measured by an external SMU."""
    ON_ARRAY = "on-array"
    """The board's own devices: offsets true, gains relative to the board mean."""


def corrected_reads(g_read_siemens: np.ndarray, gain: np.ndarray, offset_siemens: np.ndarray,
                    measured_at: tuple[float, float],
                    read_at: tuple[float | None, float | None] = (None, None)) -> np.ndarray:
    """True conductances (S) from board reads (..., cols): (g - offset) / gain per column. The
    offset was measured at `measured_at` = (read voltage V, ADC range A); reads taken at other
    settings `read_at` (None: the same) rescale it, as the module docstring explains."""
    (v_cal, range_cal), (v_read_v, range_a) = measured_at, read_at
    scale = 1.0
    if v_read_v is not None:
        scale *= v_cal / float(v_read_v)
    if range_a is not None:
        scale *= float(range_a) / range_cal
    return (np.asarray(g_read_siemens, dtype=float) - offset_siemens * scale) / gain


@dataclass
class Calibration:
    """What `imssa-hw calibrate` measured on one board."""

    board_id: str
    arrays: int
    rows: int
    cols: int
    read_gain: np.ndarray
    """(arrays, cols): board read = gain * true + offset."""
    read_offset_siemens: np.ndarray
    """(arrays, cols) S, at v_read_v and read_range_a."""
    set_curve: SetCurve | None
    reset_curve: ResetCurve | None
    relaxation: dict
    """What the relaxation check measured (delay_s, median/p95 change, ...)."""
    v_read_v: float
    """Read voltage during calibration, V."""
    read_range_a: float
    """ADC full scale of reads during calibration, A."""
    vmm_range_a: float | None = None
    """ADC full scale of the VMM calibration, A (None: no VMM step)."""
    vmm_gain: np.ndarray | None = None
    """(arrays, cols) gain of VMM column currents, None when not measured."""
    vmm_offset_a: np.ndarray | None = None
    """(arrays, cols) offset of VMM column currents at vmm_range_a, A; None when not measured."""
    reference: Reference = Reference.ON_ARRAY
    """What the read chain was calibrated against."""
    extra: dict = field(default_factory=dict)
    """Anything else worth keeping (ranges, sample sizes, fit residuals); JSON values only."""
    read_noise_rel: float | None = None
    """Noise of one corrected read relative to the conductance, measured on mid-range devices;
    programming takes it as the noise of its reads. None: not measured (older files)."""
    spec: BoardSpec | None = None
    """The board as it described itself when calibrated (`BoardInfo.spec`); None in files
    written before 0.16, which state only its id and shape."""

    def __post_init__(self) -> None:
        self.reference = Reference(self.reference)
        if self.spec is not None and self.spec.geometry.shape != (self.arrays, self.rows,
                                                                  self.cols):
            raise ValueError(f"spec is for {self.spec.geometry.shape}, the tables for "
                             f"{(self.arrays, self.rows, self.cols)}")
        shape = (self.arrays, self.cols)
        self.read_gain = np.asarray(self.read_gain, dtype=float)
        self.read_offset_siemens = np.asarray(self.read_offset_siemens, dtype=float)
        for name in ("read_gain", "read_offset_siemens", "vmm_gain", "vmm_offset_a"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=float)
                setattr(self, name, value)
                if value.shape != shape:
                    raise ValueError(f"{name} must have shape {shape}, not {value.shape}")

    # -- corrections ------------------------------------------------------------------------

    def correct_conductance(self, array: int, g_read_siemens: np.ndarray,
                            v_read_v: float | None = None,
                            read_range_a: float | None = None) -> np.ndarray:
        """True conductances (S) from board reads of `array`: (rows, cols), (cols,) or any
        (..., cols), corrected per column. `v_read_v`/`read_range_a`: the board's settings for
        these reads when they differ from the calibration's (the offset is rescaled)."""
        g = np.asarray(g_read_siemens, dtype=float)
        if g.shape[-1:] != (self.cols,):
            raise ValueError(f"the last axis must be the {self.cols} columns, not {g.shape}")
        return corrected_reads(g, self.read_gain[array], self.read_offset_siemens[array],
                               (self.v_read_v, self.read_range_a), (v_read_v, read_range_a))

    def correct_currents(self, array: int, i_cols_a: np.ndarray, v_read_v: float | None = None,
                         range_a: float | None = None) -> np.ndarray:
        """True column currents (A) from VMM outputs of `array`, (cols,) or (..., cols).

        With a VMM calibration: (i - vmm_offset_a * range_a / vmm_range_a) / vmm_gain. Without
        one, the read chain's: the offset current is read_offset_siemens * v_read_v (the read
        voltage the offset was measured at, by default the calibration's v_read_v), scaled from
        read_range_a to the VMM's ADC range `range_a` (default: the calibration's vmm_range_a,
        else read_range_a), and the gain is the read gain.
        """
        i = np.asarray(i_cols_a, dtype=float)
        if i.shape[-1:] != (self.cols,):
            raise ValueError(f"the last axis must be the {self.cols} columns, not {i.shape}")
        gain, offset_a = self.vmm_correction(array, range_a, v_read_v)
        return (i - offset_a) / gain

    def vmm_correction(self, array: int, range_a: float | None = None,
                       v_read_v: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(gain, offset current A) per column of VMM outputs on the ADC range `range_a`, as
        `correct_currents` uses them: true = (board - offset) / gain. The pair a `LoopProgram`
        takes as column_gain / column_offset_a for the on-board loop."""
        if self.vmm_gain is not None and self.vmm_offset_a is not None and self.vmm_range_a:
            scale = 1.0 if range_a is None else range_a / self.vmm_range_a
            return self.vmm_gain[array].copy(), self.vmm_offset_a[array] * scale
        v = self.v_read_v if v_read_v is None else float(v_read_v)
        target_range = range_a or self.vmm_range_a or self.read_range_a
        return (self.read_gain[array].copy(),
                self.read_offset_siemens[array] * v * (target_range / self.read_range_a))

    def offset_codes(self, adc_bits: int) -> np.ndarray:
        """(arrays, cols) each column's offset in ADC codes (the same on every range), from the
        VMM calibration when there is one, else from the reads."""
        range_a = self.vmm_range_a or self.read_range_a
        offsets_a = np.stack([self.vmm_correction(a, range_a)[1] for a in range(self.arrays)])
        return offsets_a / adc_lsb_a(range_a, adc_bits)

    def device_set_shift_v(self, array: int) -> np.ndarray:
        """(rows, cols) per-device SET gate shift (V) measured on the characterization sample:
        `set_curve.shifted(shift)` is that device's curve; NaN where not characterized."""
        table = self.extra.get("device_set_shift_v")
        if table is None:
            return np.full((self.rows, self.cols), np.nan)
        return np.array([[np.nan if v is None else v for v in row] for row in table[array]], float)

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        def table(a: np.ndarray | None):
            return None if a is None else np.asarray(a, dtype=float).tolist()

        return {"format": FORMAT, "version": VERSION, "board_id": self.board_id,
                "arrays": self.arrays, "rows": self.rows, "cols": self.cols,
                "reference": self.reference.value, "v_read_v": self.v_read_v,
                "read_range_a": self.read_range_a, "vmm_range_a": self.vmm_range_a,
                "read_gain": table(self.read_gain),
                "read_offset_siemens": table(self.read_offset_siemens),
                "vmm_gain": table(self.vmm_gain), "vmm_offset_a": table(self.vmm_offset_a),
                "set_curve": None if self.set_curve is None else self.set_curve.to_dict(),
                "reset_curve": None if self.reset_curve is None else self.reset_curve.to_dict(),
                "relaxation": self.relaxation, "read_noise_rel": self.read_noise_rel,
                "spec": None if self.spec is None else board_tables(self.spec),
                "extra": self.extra}

    @classmethod
    def from_dict(cls, data: object, where: str = "calibration") -> Calibration:
        """Validate the JSON form; every problem is a `BadInput` naming the field."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else None
            raise BadInput(f"{where}: not a calibration file (format {got!r}, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise BadInput(f"{where}: calibration version {data.get('version')!r} is not "
                           f"supported (this imssa-hw reads version {VERSION})")
        board_id = data.get("board_id")
        if not isinstance(board_id, str):
            raise BadInput(f"{where}: board_id must be a string")
        shape = list(geometry_from_dict(data, where).shape)
        tables = {key: _table(data, key, (shape[0], shape[2]), where, optional=key.startswith("vmm"))
                  for key in ("read_gain", "read_offset_siemens", "vmm_gain", "vmm_offset_a")}
        for key in ("read_gain", "vmm_gain"):
            if tables[key] is not None and np.any(tables[key] <= 0):
                raise BadInput(f"{where}: {key} must be positive")
        reference = data.get("reference", Reference.ON_ARRAY.value)
        if reference not in set(Reference):
            raise BadInput(f"{where}: reference must be one of {', '.join(Reference)}, "
                           f"got {reference!r}")
        v_read_v = _within(data, "v_read_v", "v_read_max", where)
        read_range = _within(data, "read_range_a", "adc_ranges_a", where)
        vmm_range = None if data.get("vmm_range_a") is None else _within(
            data, "vmm_range_a", "adc_ranges_a", where)
        set_curve = data.get("set_curve")
        reset_curve = data.get("reset_curve")
        relaxation = data.get("relaxation", {})
        extra = data.get("extra", {})
        if not isinstance(relaxation, dict) or not isinstance(extra, dict):
            raise BadInput(f"{where}: relaxation and extra must be objects")
        noise = data.get("read_noise_rel")
        if noise is not None and (isinstance(noise, bool) or not isinstance(noise, (int, float))
                                  or noise not in RANGES["read_noise_rel"]):
            bounds = RANGES["read_noise_rel"]
            raise BadInput(f"{where}: read_noise_rel must be a number in {bounds.low:g} .. "
                           f"{bounds.high:g} or null, got {noise!r}")
        spec = data.get("spec")
        if spec is not None:
            spec = board_spec(spec if isinstance(spec, dict) else {}, f"{where}: spec")
            if spec.geometry.shape != tuple(shape):
                raise BadInput(f"{where}: spec is for {spec.geometry.arrays} arrays of "
                               f"{spec.geometry.rows}x{spec.geometry.cols}, the tables for "
                               f"{shape[0]} arrays of {shape[1]}x{shape[2]}")
        return cls(board_id, *shape, tables["read_gain"], tables["read_offset_siemens"],
                   None if set_curve is None else SetCurve.from_dict(set_curve, f"{where}: set_curve"),
                   None if reset_curve is None
                   else ResetCurve.from_dict(reset_curve, f"{where}: reset_curve"),
                   relaxation, v_read_v, read_range, vmm_range, tables["vmm_gain"],
                   tables["vmm_offset_a"], Reference(reference), extra,
                   None if noise is None else float(noise), spec)

    def check_board(self, info) -> None:
        """BadInput unless `info` (a BoardInfo) is the board this calibration was made on."""
        if (info.board_id, info.arrays, info.rows, info.cols) != (self.board_id, self.arrays,
                                                                    self.rows, self.cols):
            raise BadInput(f"the calibration is for board {self.board_id} ({self.arrays} arrays of "
                           f"{self.rows}x{self.cols}), the board is {info.board_id} "
                           f"({info.arrays} arrays of {info.rows}x{info.cols})")
        changed = [] if self.spec is None else spec_changes(board_tables(self.spec),
                                                            board_tables(info.spec))
        if changed:
            raise BadInput(f"the calibration was made when board {self.board_id} described itself "
                           f"otherwise ({', '.join(changed)} changed): calibrate again")


def _within(data: dict, key: str, quantity: str, where: str) -> float:
    """A value of the board quantity `quantity` (a read voltage is one of `v_read_max`'s, a
    full scale one of `adc_ranges_a`'s), within its range in `RANGES`."""
    return Field(key, quantity, float).parse(data.get(key), where)


def _table(data: dict, key: str, shape: tuple[int, int], where: str,
           optional: bool = False) -> np.ndarray | None:
    value = data.get(key)
    if value is None:
        if optional:
            return None
        raise BadInput(f"{where}: lacks {key}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: {key} must be a {shape[0]}x{shape[1]} table of numbers") from None
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise BadInput(f"{where}: {key} must be a {shape[0]}x{shape[1]} table of finite numbers")
    return arr


def save_calibration(cal: Calibration, folder: str | Path) -> None:
    """Write `folder`/calib.json (JSON only), atomically."""
    write_json(Path(folder) / FILENAME, cal.to_dict())


def load_calibration(folder: str | Path) -> Calibration:
    """Read `folder`/calib.json (or the file itself when `folder` names one); BadInput naming
    the problem when it is missing or invalid."""
    path = Path(folder)
    if path.is_dir():
        path = path / FILENAME
    return Calibration.from_dict(read_json(path, "calibration not found"), str(path))
