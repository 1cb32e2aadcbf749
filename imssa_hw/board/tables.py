"""A board's tables in a profile file (`imssa_hw/profiles/board-*.toml`, docs/compiler.md):
each key with its type, its file unit and its range (`RANGES` for the board's quantities), read
into the parameter tree. `board.profile` reads whole profiles with them, the emulator its
profiles' board (`board_spec`); `shipped_board` reads the board a shipped profile describes, for
a backend that is that board (the ArC TWO's).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from imssa_hw.board.params import (RANGES, BoardSpec, Bounds, ConductanceWindow, Geometry,
                                   PulseLimits, ReadChainSpec)
from imssa_hw.errors import BadInput


@dataclass(frozen=True)
class Field:
    """One key of a table: the attribute it fills, its type, range and file unit."""

    key: str
    attribute: str
    kind: type
    bounds: Bounds | None = None
    """None: the board quantity's range, `RANGES[attribute]` (a str has none)."""
    per_si: float = 1.0
    """File units per SI unit (1e6 for uS)."""

    def parse(self, value: Any, where: str) -> Any:
        """The value in SI units; BadInput naming `where` and the key."""
        if self.kind is str:
            if not isinstance(value, str) or not value:
                raise BadInput(f"{where}: {self.key} must be a non-empty string, got {value!r}")
            return value
        if self.kind is tuple:
            if not isinstance(value, list) or not value:
                raise BadInput(f"{where}: {self.key} must be a non-empty list of numbers")
            return tuple(self._number(v, where) for v in value)
        return self._number(value, where)

    def _number(self, value: Any, where: str) -> float | int:
        ok = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not math.isfinite(value):
            kind = "an integer" if self.kind is int else "a number"
            raise BadInput(f"{where}: {self.key} must be {kind}, got {value!r}")
        try:
            (self.bounds or RANGES[self.attribute]).check(self.key, value, self.per_si)
        except ValueError as exc:
            raise BadInput(f"{where}: {exc}") from None
        return int(value) if self.kind is int else float(value) / self.per_si

    def to_file(self, value: Any) -> Any:
        """An SI value in its file form."""
        if self.kind is tuple:
            return [round(v * self.per_si, 12) for v in value]
        if self.kind is float:
            return round(value * self.per_si, 12)
        return value


@dataclass(frozen=True)
class Table:
    """One table of a profile: the attribute it fills and the class it builds from its keys."""

    attribute: str
    cls: type
    fields: tuple[Field, ...]
    optional: bool = False
    """A missing table takes the class's defaults."""

    def read(self, section: dict, where: str) -> Any:
        """The table's object from `section` (keys it does not know are the caller's to
        refuse); BadInput naming `where` (the file and table)."""
        values = {}
        for f in self.fields:
            if f.key not in section:
                raise BadInput(f"{where} lacks {f.key}")
            values[f.attribute] = f.parse(section[f.key], where)
        try:
            return self.cls(**values)
        except ValueError as exc:
            raise BadInput(f"{where}: {exc}") from None

    def write(self, obj: Any) -> dict[str, Any]:
        """The table of `obj` (of `cls`) in file form."""
        return {f.key: f.to_file(getattr(obj, f.attribute)) for f in self.fields}


BOARD_TABLES = {
    "board": Table("geometry", Geometry, (
        Field("arrays", "arrays", int),
        Field("rows", "rows", int),
        Field("cols", "cols", int),
        Field("cell", "cell", str))),
    "conductance": Table("conductance", ConductanceWindow, (
        Field("g_min_us", "g_min_siemens", float, per_si=1e6),
        Field("g_max_us", "g_max_siemens", float, per_si=1e6),
        Field("tolerance_us", "tolerance_siemens", float, per_si=1e6))),
    "read": Table("read", ReadChainSpec, (
        Field("v_read_max", "v_read_max", float),
        Field("dac_bits", "dac_bits", int),
        Field("adc_bits", "adc_bits", int),
        Field("tia_ranges_ua", "adc_ranges_a", tuple, per_si=1e6))),
    "limits": Table("limits", PulseLimits, (
        Field("v_set_max", "v_set_max", float),
        Field("v_reset_max", "v_reset_max", float),
        Field("v_gate_max", "v_gate_max", float))),
}
"""The tables that describe the board itself (a profile's others describe a deployment)."""


_SHAPE = Table("geometry", Geometry, BOARD_TABLES["board"].fields[:3])
"""The shape part of [board], as calibration and defect files state it."""


def geometry_from_dict(data: dict, where: str) -> Geometry:
    """The board shape a calibration or defect file states (`arrays`, `rows`, `cols`), checked
    as a profile's [board]; BadInput naming `where`."""
    return _SHAPE.read(data, where)


def board_spec(data: dict, where: str) -> BoardSpec:
    """The board that the `BOARD_TABLES` of a file (TOML tables, file units) describe; keys those
    tables do not know are the caller's to refuse. BadInput naming `where` and the table."""
    parts = {}
    for table, spec in BOARD_TABLES.items():
        section = data.get(table)
        if not isinstance(section, dict):
            raise BadInput(f"{where}: missing table [{table}]")
        parts[table] = spec.read(section, f"{where} [{table}]")
    try:
        return BoardSpec(parts["board"], parts["conductance"], parts["read"], parts["limits"])
    except ValueError as exc:
        raise BadInput(f"{where}: {exc}") from None


def board_tables(spec: BoardSpec) -> dict[str, dict[str, Any]]:
    """`spec` in the file form `board_spec` reads (the `BOARD_TABLES`, file units): how files
    that record which board they were made on (programming journals, calibrations) state it."""
    parts = {"board": spec.geometry, "conductance": spec.window, "read": spec.read_chain,
             "limits": spec.limits}
    return {table: t.write(parts[table]) for table, t in BOARD_TABLES.items()}


def spec_changes(old: object, new: dict[str, dict[str, Any]]) -> list[str]:
    """The entries "[table] key" whose values differ between a file's record of its board
    (`old`, the `board_tables` form as read back; a damaged record differs everywhere) and the
    board now (`new`), sorted; empty when both describe the same board."""
    def table(form: object, name: str) -> dict:
        found = form.get(name) if isinstance(form, dict) else None
        return found if isinstance(found, dict) else {}
    names = sorted(set(new) | (set(old) if isinstance(old, dict) else set()))
    return [f"[{name}] {key}" for name in names
            for key in sorted(set(table(old, name)) | set(table(new, name)))
            if table(old, name).get(key) != table(new, name).get(key)]


def shipped_board(name: str) -> BoardSpec:
    """The board the shipped profile `name` (e.g. "board-arc2") describes."""
    data = tomllib.loads((resources.files("imssa_hw") / "profiles" / f"{name}.toml").read_text())
    return board_spec(data, f"profile {name}")
