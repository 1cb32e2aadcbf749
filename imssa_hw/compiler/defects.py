"""Defect maps (`defects.json`): devices that cannot be programmed, as calibration finds them.

Format (version 1), written by `imssa-hw calibrate`, read by compile and program:

    {"format": "imssa-hw-defects", "version": 1, "arrays": 3, "rows": 64, "cols": 64,
     "stuck": [{"array": 0, "row": 5, "col": 17, "kind": "stuck_on", "g_siemens": 1.4e-4}, ...]}

`kind` is stuck_on, stuck_off or unresponsive; `g_siemens` is the conductance (S) the device stays
at, or null when unknown (such a device never counts as matching a target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from imssa_hw.board import Geometry
from imssa_hw.board.tables import geometry_from_dict
from imssa_hw.errors import BadInput
from imssa_hw.files import read_json, write_json

FORMAT = "imssa-hw-defects"
VERSION = 1


class DefectKind(StrEnum):
    """How a device fails to respond to pulses."""

    STUCK_ON = "stuck_on"
    """Stays high (above half the window) whatever the pulses."""
    STUCK_OFF = "stuck_off"
    """Stays at or below the off level."""
    UNRESPONSIVE = "unresponsive"
    """Stays somewhere in between, or its SET response never moved."""


@dataclass(frozen=True)
class StuckDevice:
    """One device that stays where it is, at `g_siemens` (None when unknown)."""

    array: int
    row: int
    col: int
    kind: DefectKind
    g_siemens: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DefectKind(self.kind))  # a name of a kind is accepted

    def to_dict(self) -> dict:
        return {"array": self.array, "row": self.row, "col": self.col,
                "kind": self.kind.value, "g_siemens": self.g_siemens}


@dataclass(frozen=True)
class DefectMap:
    """The stuck devices of a board of `arrays` x `rows` x `cols` cells."""

    arrays: int
    rows: int
    cols: int
    stuck: tuple[StuckDevice, ...]

    def on_array(self, array: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, cols and conductances (S, NaN when unknown) of the stuck devices of `array`."""
        devices = [d for d in self.stuck if d.array == array]
        return (np.array([d.row for d in devices], dtype=np.int64),
                np.array([d.col for d in devices], dtype=np.int64),
                np.array([np.nan if d.g_siemens is None else d.g_siemens for d in devices],
                         dtype=np.float64))

    def mask(self) -> np.ndarray:
        """(arrays, rows, cols) bool, True at the stuck devices."""
        mask = np.zeros((self.arrays, self.rows, self.cols), bool)
        for d in self.stuck:
            mask[d.array, d.row, d.col] = True
        return mask

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "arrays": self.arrays, "rows": self.rows,
                "cols": self.cols, "stuck": [d.to_dict() for d in self.stuck]}

    def save(self, path: str | Path) -> None:
        """Write as defects.json (atomically)."""
        write_json(path, self.to_dict())


def defects_from_dict(data: dict, where: str = "defect map") -> DefectMap:
    """Validate the JSON form; every problem is a `BadInput` naming the entry."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{where}: not a defect map (format "
                       f"{data.get('format') if isinstance(data, dict) else None!r}, "
                       f"expected {FORMAT!r})")
    if data.get("version") != VERSION:
        raise BadInput(f"{where}: defect map version {data.get('version')!r} is not supported "
                       f"(this imssa-hw reads version {VERSION})")
    shape = list(geometry_from_dict(data, where).shape)
    entries = data.get("stuck")
    if not isinstance(entries, list):
        raise BadInput(f"{where}: 'stuck' must be a list of devices")
    stuck, seen = [], set()
    for i, e in enumerate(entries):
        stuck.append(_device(e, shape, f"{where}: stuck[{i}]"))
        cell = (stuck[-1].array, stuck[-1].row, stuck[-1].col)
        if cell in seen:
            raise BadInput(f"{where}: stuck[{i}] repeats device {cell}")
        seen.add(cell)
    return DefectMap(*shape, tuple(stuck))


def _device(e: object, shape: list[int], where: str) -> StuckDevice:
    if not isinstance(e, dict):
        raise BadInput(f"{where} must be an object")
    unknown = sorted(set(e) - {"array", "row", "col", "kind", "g_siemens"})
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(unknown)}")
    index = []
    for key, size in zip(("array", "row", "col"), shape):
        value = e.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < size:
            raise BadInput(f"{where}: {key} must be an integer in 0..{size - 1}, got {value!r}")
        index.append(value)
    if e.get("kind") not in set(DefectKind):
        raise BadInput(f"{where}: kind must be one of {', '.join(DefectKind)}, "
                       f"got {e.get('kind')!r}")
    g = e.get("g_siemens")
    if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float))
                          or not math.isfinite(g) or not 0 <= g < 1):
        raise BadInput(f"{where}: g_siemens must be a conductance in S (0 <= g_siemens < 1) or null, "
                       f"got {g!r}")
    return StuckDevice(*index, DefectKind(e["kind"]), None if g is None else float(g))


def load_defects(path: str | Path, geometry: Geometry) -> DefectMap:
    """Read defects.json and check that it describes a board of `geometry`'s shape."""
    path = Path(path)
    defects = defects_from_dict(read_json(path, "defect map not found"), str(path))
    if (defects.arrays, defects.rows, defects.cols) != geometry.shape:
        raise BadInput(f"{path}: the defect map is for a board of {defects.arrays} arrays of "
                       f"{defects.rows}x{defects.cols}, the profile has {geometry.arrays} arrays "
                       f"of {geometry.rows}x{geometry.cols}")
    return defects
