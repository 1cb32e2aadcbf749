"""Board profiles: what the compiler and hardware-aware training need to know about a crossbar
board, from a TOML file.

A profile is versioned TOML (see `imssa_hw/profiles/board-default.toml`). File keys carry
their unit when it is not SI (`g_min_us`, `tia_ranges_ua`, `pulse_width_ns`); the dataclasses
hold SI values (S, V, A, s). Every value is checked on load and any problem is a `BadInput`
naming the file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from imssa_hw.board.params import (BoardSpec, Bounds, ConductanceWindow, Geometry, PulseLimits,
                                   ReadChainSpec, check_ranges)
from imssa_hw.board.tables import BOARD_TABLES, Field, Table
from imssa_hw.errors import BadInput

FORMAT = "imssa-hw-board-profile"
VERSION = 1


class Differential(StrEnum):
    """Where the negative conductance of a weight sits."""

    COLUMNS = "columns"
    """G+ and G- on paired columns, read as I+ - I-."""
    ROWS = "rows"
    """G+ and G- on two rows of one input, driven at +V and -V."""


@dataclass(frozen=True)
class ProgrammingLimits(PulseLimits):
    """The deployment's pulse limits (programming uses the tighter of these and the board's),
    and the programming pulse width it was written for."""

    pulse_width_s: float = 20e-9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, "pulse_width_s")


@dataclass(frozen=True)
class DeviceErrors:
    """How far a programmed board departs from its targets, as hardware-aware training draws it
    (besides the converters and column offsets, always modelled). Defaults: none, as measured
    best (board-default.toml says why)."""

    g_sigma_siemens: float = 0.0
    """Conductance error per device (S, sigma): write-verify tolerance plus relaxation."""
    read_noise_rel: float = 0.0
    """Read noise relative to each device's current."""
    stuck_fraction: float = 0.0
    """Devices stuck on or off (half each) on cells that matter, after defect-aware placement."""


@dataclass(frozen=True)
class LoopTiming:
    """How long the board's loop takes; the compiler reports a deployment's time per step from
    it and compiles the same without it."""

    vmm_time_s: float = 0.0
    """One VMM of the loop (s): the row DACs settle, the columns integrate, the ADCs convert;
    0: not known."""

    def step_time_s(self, vmms: int) -> float | None:
        """Time of one step that takes `vmms` VMMs (None when the VMM time is not known)."""
        return vmms * self.vmm_time_s if self.vmm_time_s else None


@dataclass(frozen=True)
class BoardProfile:
    """A board as the compiler and hardware-aware training see it."""

    name: str
    description: str
    geometry: Geometry
    conductance: ConductanceWindow
    read: ReadChainSpec
    differential: Differential
    limits: ProgrammingLimits
    errors: DeviceErrors = DeviceErrors()
    timing: LoopTiming = LoopTiming()

    def __post_init__(self) -> None:
        object.__setattr__(self, "differential", Differential(self.differential))

    @property
    def spec(self) -> BoardSpec:
        """The board this profile describes, in the shared parameter tree."""
        return BoardSpec(self.geometry, self.conductance, self.read, self.limits)

    def check_board(self, board: BoardSpec, board_id: str,
                    ranges_a: Sequence[float] | None = None) -> None:
        """BadInput, one line naming every misfit (`BoardSpec.misfits`), unless the board
        `board_id` (`board`: what it announces, `BoardInfo.spec`) fits what is compiled for this
        profile (using the TIA ranges `ranges_a`; None: any of the profile's)."""
        misfits = self.spec.misfits(board, ranges_a)
        if misfits:
            raise BadInput(f"{'; '.join(misfits)} (profile {self.name}, board {board_id})")

    def to_dict(self) -> dict[str, Any]:
        """The profile in its file form (TOML tables, file units)."""
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "name": self.name,
                               "description": self.description,
                               "mapping": {"differential": self.differential.value}}
        for table, spec in _TABLES.items():
            out[table] = spec.write(getattr(self, spec.attribute))
        return out


_TABLES = {
    **BOARD_TABLES,
    "limits": Table("limits", ProgrammingLimits, BOARD_TABLES["limits"].fields + (
        Field("pulse_width_ns", "pulse_width_s", float, per_si=1e9),)),
    "errors": Table("errors", DeviceErrors, (
        Field("g_sigma_us", "g_sigma_siemens", float, Bounds(0, 1e-3), 1e6),
        Field("read_noise_rel", "read_noise_rel", float),
        Field("stuck_fraction", "stuck_fraction", float, Bounds(0, 0.5))), optional=True),
    "timing": Table("timing", LoopTiming, (
        Field("vmm_time_ns", "vmm_time_s", float, Bounds(0, 1.0), 1e9),), optional=True),
}


def profile_from_dict(data: dict[str, Any], where: str = "profile") -> BoardProfile:
    """Validate a profile in file form (as read from TOML or a deploy.json)."""
    if not isinstance(data, dict):
        raise BadInput(f"{where}: a profile must be a table of keys")
    if data.get("format") != FORMAT:
        raise BadInput(f"{where}: not a board profile (format {data.get('format')!r}, "
                       f"expected {FORMAT!r})")
    if data.get("version") != VERSION:
        raise BadInput(f"{where}: profile version {data.get('version')!r} is not supported "
                       f"(this imssa-hw reads version {VERSION})")
    _no_unknown(data, {"format", "version", "name", "description", "mapping", *_TABLES}, where)
    parts = {}
    for table, spec in _TABLES.items():
        if spec.optional and table not in data:
            parts[spec.attribute] = spec.cls()
            continue
        section = _section(data, table, where)
        _no_unknown(section, {f.key for f in spec.fields}, f"{where} [{table}]")
        parts[spec.attribute] = spec.read(section, f"{where} [{table}]")
    mapping = _section(data, "mapping", where)
    _no_unknown(mapping, {"differential"}, f"{where} [mapping]")
    differential = mapping.get("differential", Differential.COLUMNS.value)
    if differential not in set(Differential):
        raise BadInput(f"{where}: [mapping] differential must be one of "
                       f"{', '.join(Differential)}, got {differential!r}")
    name, description = data.get("name", "unnamed"), data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise BadInput(f"{where}: name and description must be strings")
    profile = BoardProfile(name=name, description=description,
                           differential=Differential(differential),
                           **parts)
    try:
        profile.spec  # the checks between tables
    except ValueError as exc:
        raise BadInput(f"{where}: {exc}") from None
    return profile


def _section(data: dict, table: str, where: str) -> dict:
    section = data.get(table, {} if table == "mapping" else None)
    if not isinstance(section, dict):
        raise BadInput(f"{where}: missing table [{table}]")
    return section


def _no_unknown(table: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(unknown)}")


def load_board_profile(name_or_path: str | Path) -> BoardProfile:
    """A profile from a TOML file, or a shipped one by name (e.g. "board-default")."""
    path = Path(name_or_path)
    if path.is_file():
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{where}: cannot read the profile ({exc})") from None
    else:
        shipped = resources.files("imssa_hw") / "profiles" / f"{name_or_path}.toml"
        if path.suffix or not shipped.is_file():
            raise BadInput(f"board profile not found: {name_or_path} (a TOML file, or one of "
                           f"{', '.join(shipped_profiles())})")
        text, where = shipped.read_text(), f"profile {name_or_path}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{where}: not valid TOML ({exc})") from None
    return profile_from_dict(data, where)


def shipped_profiles() -> list[str]:
    """Names of the board profiles shipped in the package (emulator profiles excluded)."""
    folder = resources.files("imssa_hw") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.startswith("board-")
                  and p.name.endswith(".toml"))
