"""Emulator parameters, loaded from a TOML profile: the board itself as a `BoardSpec`, read from
the tables a board profile describes it with ([board], [conductance], [read], [limits]:
`imssa_hw.board.tables`), and one frozen dataclass per other section: what the firmware
announces, the power-on settings and the physics (read-chain errors, devices, relaxation,
retention, defects, endurance, the SMU).

The packaged default is `imssa_hw/profiles/emulator-default.toml`; its comments give each value's
source. `emulator-harsh.toml` holds only its differences from the default (`base =`). Any key
can be overridden as "section.key" (e.g. `read_chain.read_noise_rel=0`, `read.adc_bits=10`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from imssa_hw import __version__
from imssa_hw.board.params import BoardSpec
from imssa_hw.board.tables import BOARD_TABLES, Field, board_spec
from imssa_hw.drivers.framing import PROTOCOL_VERSION
from imssa_hw.config import FieldError, typed
from imssa_hw.drivers.messages import WIRE_ADC_BITS, BoardConfig, BoardInfo, BoardLimits
from imssa_hw.errors import BadInput


DEFAULT_PROFILE = "emulator-default.toml"


@dataclass(frozen=True)
class FirmwareParams:
    """What the firmware announces and accepts beside the board itself."""

    board_id: str
    max_loop_steps: int
    """Sequences x steps one RUN_SEQUENCE may ask for."""
    step_time_s: float
    """The longest one program step of one sequence takes, announced for timeouts."""
    pulse_width_min_s: float
    pulse_width_max_s: float
    """The programming pulse widths it accepts, s."""
    protocol_version: int = PROTOCOL_VERSION
    """The highest protocol version the firmware speaks (it accepts every one from 1 up)."""


@dataclass(frozen=True)
class ReadChainParams:
    """The read chain's errors (its converters and ranges: the board's `BoardSpec.read_chain`)."""

    tia_gain_sigma: float
    tia_offset_sigma_fs: float
    read_noise_rel: float
    ir_drop_r_wire_ohm: float


@dataclass(frozen=True)
class DeviceParams:
    g_off_siemens: float
    g_off_sigma_siemens: float
    g_on_max_siemens: float
    g_on_max_sigma_siemens: float
    set_gain_siemens: float
    set_gain_sigma_log: float
    set_gate_vt_v: float
    set_gate_vt_sigma_v: float
    set_exponent: float
    set_exponent_sigma: float
    set_threshold_v: float
    set_threshold_sigma_v: float
    set_c2c_sigma_siemens: float
    set_c2c_slope: float
    set_c2c_min_siemens: float
    reset_threshold_v: float
    reset_threshold_sigma_v: float
    reset_scale_v: float
    reset_scale_sigma_log: float
    reset_exponent: float
    reset_gate_vt_v: float
    reset_gate_char_v: float
    reset_c2c_rel: float
    reset_c2c_floor_siemens: float
    pulse_width_ref_s: float


@dataclass(frozen=True)
class RelaxationParams:
    tau_s: float
    sigma_min_siemens: float
    sigma_max_siemens: float
    full_change_siemens: float


@dataclass(frozen=True)
class RetentionParams:
    """Long-term drift after programming, growing with log time (see emulator/devices.py)."""

    sigma_min_siemens: float
    """Spread of the drift at the reference age, at the window's edges, S."""
    sigma_max_siemens: float
    """The same mid-window, S."""
    reference_age_s: float
    """The age at which those spreads hold (one day in the NeuRRAM fit), s."""
    onset_s: float
    """The knee of the log-time growth, s."""


@dataclass(frozen=True)
class DefectParams:
    stuck_on_fraction: float
    stuck_on_g_siemens: float
    stuck_on_sigma_siemens: float
    stuck_off_fraction: float
    stuck_off_g_siemens: float


@dataclass(frozen=True)
class EnduranceParams:
    median_pulses: float
    sigma_log: float


@dataclass(frozen=True)
class SmuParams:
    idn: str
    noise_rel: float
    noise_floor_a: float


@dataclass(frozen=True)
class Profile:
    """A whole emulated board: the board, its firmware, power-on settings and physics."""

    spec: BoardSpec
    firmware: FirmwareParams
    defaults: BoardConfig
    read_chain: ReadChainParams
    device: DeviceParams
    relaxation: RelaxationParams
    retention: RetentionParams
    defects: DefectParams
    endurance: EnduranceParams
    smu: SmuParams

    @cached_property
    def limits(self) -> BoardLimits:
        """The limits the board enforces (and announces): the spec's, the firmware's widths."""
        pulses, fw = self.spec.limits, self.firmware
        return BoardLimits(v_set_max=pulses.v_set_max, v_reset_max=pulses.v_reset_max,
                           v_gate_max=pulses.v_gate_max, v_read_max=self.spec.read_chain.v_read_max,
                           pulse_width_min_s=fw.pulse_width_min_s,
                           pulse_width_max_s=fw.pulse_width_max_s)


def board_info(profile: Profile) -> BoardInfo:
    """What a board emulated with `profile` announces on identify."""
    fw = profile.firmware
    return BoardInfo(fw.board_id, f"imssa-emu {__version__}", fw.protocol_version, profile.spec,
                     fw.pulse_width_min_s, fw.pulse_width_max_s, fw.max_loop_steps,
                     fw.step_time_s)


def parse_override(text: str) -> tuple[str, Any]:
    """"section.key=value" -> ("section.key", value), the value read as a TOML value."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise BadInput(f"override {text!r} is not of the form section.key=value")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def load_emulator_profile(path: str | Path | None = None,
                          overrides: dict[str, Any] | None = None) -> Profile:
    """Read a profile and apply "section.key" overrides.

    `path` is a TOML file or the name of a shipped profile ("emulator-default",
    "emulator-harsh"); None is the default. A profile whose top level says
    `base = "NAME"` holds only its differences from that shipped profile.
    """
    data = _profile_tables(path)
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not isinstance(data.get(section), dict) or name not in data[section]:
            raise BadInput(f"unknown profile key {key!r}")
        data[section][name] = value
    profile = _profile(data, str(path or DEFAULT_PROFILE.removesuffix(".toml")))
    _check(profile)
    return profile


def _profile(data: dict[str, Any], name: str) -> Profile:
    """The profile of the tables `data`: the board from its board tables, each other section
    typed as its dataclass; BadInput naming the file and what is wrong."""
    where = f"bad profile {name}"
    sections = {f.name for f in fields(Profile)} - {"spec"}
    unknown = sorted(set(data) - sections - set(BOARD_TABLES))
    if unknown:
        raise BadInput(f"{where}: unknown table(s) {', '.join(unknown)}")
    for table, spec in BOARD_TABLES.items():
        section = data.get(table)
        extra = sorted(set(section) - {f.key for f in spec.fields}) if isinstance(section, dict) \
            else []
        if extra:
            raise BadInput(f"{where} [{table}]: unknown key(s) {', '.join(extra)}")
    board, hints = board_spec(data, where), get_type_hints(Profile)
    try:
        return Profile(board, **{name: typed(hints[name], data.get(name)) for name in sections})
    except FieldError as exc:
        raise BadInput(f"{where}: {exc}") from None


def shipped_emulator_profiles() -> list[str]:
    """Names of the emulator profiles shipped in the package."""
    folder = resources.files("imssa_hw") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.startswith("emulator-"))


def _profile_tables(path: str | Path | None, depth: int = 0) -> dict[str, Any]:
    """The profile's tables, its base's filled in under its own."""
    shipped = resources.files("imssa_hw") / "profiles"
    where = Path(path) if path is not None else None
    try:
        if where is None:
            text = shipped.joinpath(DEFAULT_PROFILE).read_text()
        elif where.is_file():
            text = where.read_text()
        elif not where.suffix and str(path) in shipped_emulator_profiles():
            text = shipped.joinpath(f"{path}.toml").read_text()
        else:
            raise BadInput(f"emulator profile not found: {path} (a TOML file, or one of "
                           f"{', '.join(shipped_emulator_profiles())})")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"cannot read profile {path}: {exc}") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if base not in shipped_emulator_profiles() or depth > 4:
        raise BadInput(f"{path}: base must name a shipped profile "
                       f"({', '.join(shipped_emulator_profiles())}), got {base!r}")
    merged = _profile_tables(base, depth + 1)
    for section, table in data.items():
        if not isinstance(table, dict) or not isinstance(merged.get(section), dict):
            raise BadInput(f"{path}: unknown table [{section}]")
        unknown = sorted(set(table) - set(merged[section]))
        if unknown:
            raise BadInput(f"{path}: unknown key(s) {', '.join(unknown)} in [{section}]")
        merged[section].update(table)
    return merged


MAX_DEVICES = 1 << 24
"""The most devices an emulated board holds (16 Mi, e.g. 4 arrays of 2048 x 2048): its state in
memory and in the state file."""


def _check(profile: Profile) -> None:
    firmware, geometry = profile.firmware, profile.spec.geometry
    try:
        WIRE_ADC_BITS.check("adc_bits", profile.spec.read_chain.adc_bits)
    except ValueError as exc:
        raise BadInput(f"bad profile: {exc}: the emulated board speaks the serial protocol, "
                       f"whose ADC codes are int16") from None
    if geometry.arrays * geometry.rows * geometry.cols > MAX_DEVICES:
        raise BadInput(f"{geometry.arrays} x {geometry.rows} x {geometry.cols} devices are more "
                       f"than an emulated board holds ({MAX_DEVICES})")
    if firmware.max_loop_steps < 1 or not firmware.step_time_s > 0:
        raise BadInput("firmware.max_loop_steps must be >= 1 and firmware.step_time_s > 0")
    if not 1 <= firmware.protocol_version <= PROTOCOL_VERSION:
        raise BadInput(f"firmware.protocol_version must be within 1..{PROTOCOL_VERSION}")
    try:
        board_info(profile)  # the announced limits and pulse widths, validated (RANGES)
    except ValueError as exc:
        raise BadInput(f"bad profile: {exc}") from None
    defaults, limits = profile.defaults, profile.limits
    ranges = profile.spec.read_chain.adc_ranges_a
    if defaults.read_range_a not in ranges or defaults.vmm_range_a not in ranges:
        raise BadInput("defaults.read_range_a and vmm_range_a must be among read.tia_ranges_ua")
    if not 0 < defaults.v_read_v <= limits.v_read_max:
        raise BadInput("defaults.v_read_v must be within (0, read.v_read_max]")
    if not limits.pulse_width_min_s <= defaults.pulse_width_s <= limits.pulse_width_max_s:
        raise BadInput("defaults.pulse_width_s must be within the pulse width limits")
    not_finite = [f"{name}.{f.name}" for name in ("firmware", "read_chain", "device",
                                                   "relaxation", "retention", "defects",
                                                   "endurance", "smu", "defaults")
                  for f in fields(getattr(profile, name))
                  if not all(map(math.isfinite, _numbers(getattr(getattr(profile, name), f.name))))]
    if not_finite:
        raise BadInput(f"profile values must be finite numbers: {', '.join(not_finite)}")
    negative = []
    for name in ("read_chain", "device", "relaxation", "retention", "defects", "endurance", "smu"):
        section = getattr(profile, name)
        negative += [f"{name}.{f.name}" for f in fields(section)
                     if isinstance(getattr(section, f.name), float) and getattr(section, f.name) < 0
                     and not f.name.endswith("slope")]
    if negative:
        raise BadInput(f"profile values must not be negative: {', '.join(negative)}")
    if profile.relaxation.tau_s <= 0:
        raise BadInput("relaxation.tau_s must be > 0")
    if profile.retention.onset_s <= 0 or profile.retention.reference_age_s <= 0:
        raise BadInput("retention.onset_s and retention.reference_age_s must be > 0")
    Field("read_chain.read_noise_rel", "read_noise_rel", float).parse(
        profile.read_chain.read_noise_rel, "bad profile")


def _numbers(value: Any) -> list[float]:
    """The floats in a profile value (a float, or a list of them); [] for anything else."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, float)]
