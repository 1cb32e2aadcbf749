"""Programming settings: the tolerance (absolute or relative), timing, bounds and voltage limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from imssa_hw.board.params import RANGES
from imssa_hw.config import Config
from imssa_hw.errors import BadInput

DEFAULT_READ_NOISE_REL = 0.01
"""Read noise of one read when the calibration did not measure it: 1 % of G (the HPE boards,
the default emulated board)."""
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TOLERANCE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(%|[a-zµ]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Tolerance(Config):
    """Within how far of its target a device counts as programmed: `abs_siemens` (S) or `rel` (a
    fraction of the target); a relative tolerance is never tighter than `floor_siemens`."""

    WHAT: ClassVar[str] = "tolerance"

    abs_siemens: float = 2e-6
    rel: float = 0.0
    floor_siemens: float = 0.0

    def of(self, targets_siemens: np.ndarray) -> np.ndarray:
        """The tolerance of every device, S (same shape as `targets_siemens`)."""
        targets = np.asarray(targets_siemens, dtype=float)
        if self.rel:
            return np.maximum(self.rel * targets, self.floor_siemens)
        return np.full(targets.shape, self.abs_siemens)

    def with_floor(self, floor_siemens: float) -> Tolerance:
        return Tolerance(self.abs_siemens, self.rel, max(self.floor_siemens, floor_siemens))

    def __str__(self) -> str:
        return f"{self.rel * 100:g}%" if self.rel else f"{self.abs_siemens * 1e6:g}uS"


def parse_tolerance(text: str | float | Tolerance) -> Tolerance:
    """'2uS', '0.002 mS', '2e-6S' (absolute) or '5%' (relative to each target) -> Tolerance.

    A bare number is refused: the unit says which kind is meant."""
    if isinstance(text, Tolerance):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        if not _tolerance_siemens(value):
            raise BadInput(f"tolerance must be a conductance in S above 0 and at most "
                           f"{RANGES['tolerance_siemens'].high:g} S, got {text!r}")
        return Tolerance(abs_siemens=value)
    match = _TOLERANCE.match(str(text))
    if not match:
        raise BadInput(f"--tolerance must be a conductance such as 2uS or a percentage such as "
                       f"5%, got {text!r}")
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        if not 0 < value < 100:
            raise BadInput(f"--tolerance {text!r}: a relative tolerance must be between 0 and "
                           f"100 %")
        return Tolerance(abs_siemens=0.0, rel=value / 100)
    if unit not in _UNITS:
        raise BadInput(f"--tolerance {text!r}: unknown unit {match.group(2)!r} (use uS, mS, nS, S "
                       f"or %)")
    siemens = value * _UNITS[unit]
    if not _tolerance_siemens(siemens):
        raise BadInput(f"--tolerance {text!r}: must be above 0 and at most "
                       f"{RANGES['tolerance_siemens'].high:g} S")
    return Tolerance(abs_siemens=siemens)


def _tolerance_siemens(siemens: float) -> bool:
    """Whether an absolute tolerance is one a board profile may state (above 0)."""
    return siemens > 0 and siemens in RANGES["tolerance_siemens"]


@dataclass(frozen=True)
class ProgramSettings(Config):
    """How the write-verify loop runs. The defaults suit the emulated board's devices (relaxation
    time constant 0.5 s); for devices that relax over seconds, raise `settle_s` and
    `verify_delay_s` (`imssa-hw program --settle --verify-delay`)."""

    WHAT: ClassVar[str] = "programming settings"

    inner_fraction: float = 0.6
    """Inner tolerance = this x the tolerance: a device stops being pulsed inside it, and is
    pulsed again only once it leaves the (outer) tolerance (hysteresis)."""
    settle_s: float = 1.0
    """After a pulse, reads younger than this are not averaged, and a fine correction waits
    until the device has settled this long (coarse corrections do not wait)."""
    verify_delay_s: float = 2.5
    """A device is verified only when its last pulse is at least this old (re-verify after
    relaxation) and its averaged reads are within the tolerance."""
    small_change: float = 2.0
    """A pulse that changed the device by at most this many tolerances (on the first read
    after it) is a small correction: small corrections relax less, so they wait
    `settle_small_s` and `verify_delay_small_s` instead."""
    settle_small_s: float = 0.3
    verify_delay_small_s: float = 1.5
    verify_reads: int = 3
    """Settled reads averaged at least before a device can be verified."""
    verify_sigmas: float = 2.0
    """A device is verified when its averaged error is within the inner tolerance and |error| +
    verify_sigmas x (uncertainty of its averaged reads) is within the tolerance."""
    average_reads: int = 16
    """Settled reads are averaged: a plain mean up to this many, then an exponential average
    with weight 1/average_reads (it follows the end of relaxation)."""
    coarse_factor: float = 3.0
    """Errors beyond coarse_factor x the tolerance (plus coarse_sigmas x the uncertainty of the
    estimate) are corrected without waiting to settle."""
    coarse_sigmas: float = 2.0
    """How far beyond coarse_factor x the tolerance an error must be, in uncertainties of the
    estimate, to count as coarse: a single noisy read of a high-conductance device (2 % read
    noise is 3 uS at 150 uS) must not pass for a coarse error and trigger a pulse."""
    read_noise_rel: float | None = None
    """Relative read noise of one read; with the ADC step it gives the uncertainty of averaged
    reads. None: the calibration's measurement, else DEFAULT_READ_NOISE_REL (`with_read_noise`)."""
    read_bias_rel: float = 0.003
    """Residual per-column error of calibrated reads, relative (calibration with an SMU:
    ~0.1-0.5 %); it does not average away, so it widens the verify margin. Not applied
    without a calibration (reads are then all there is)."""
    max_pulses: int = 40
    """A device not yet within its inner tolerance after this many pulses is given up as stuck."""
    max_no_response: int = 3
    """Pulses at the voltage limits without a response before a device is stuck."""
    set_margin: float = 1.0
    """A SET aims this many tolerances above the target: SET jumps are coarser than RESET
    steps, so landing a little high (then one RESET trim) beats landing low (another SET)."""
    gate_step_v: float = 0.03
    """When a device's SET model points at a gate already seen landing too high (or too low)
    by over two tolerances, the gate moves this far from it (or to the middle of the known
    bracket) instead, V."""
    reset_margin: float = 0.15
    """A RESET aims this many tolerances above the target (undershooting costs a SET)."""
    off_floor_resets: int = 2
    """A device whose target is the off level is finished with this many RESETs at the
    strongest RESET voltage, so that it rests where RESET leaves it (its floor, a spread of a
    few 0.1 uS) rather than anywhere within the tolerance above the off level: most cells of a
    tile are off, and their errors add up in every column. 0: anywhere within the tolerance."""
    reset_min_step: float = 1.0
    """A RESET trim removes at least this many inner tolerances (smaller steps drown in noise)."""
    reset_shift_sigma_v: float = 0.06
    """Prior device-to-device spread of the RESET threshold around the RESET curve's, V."""
    reset_slope_sigma: float = 0.15
    """Prior device-to-device spread of the RESET steepness relative to the curve's."""
    reset_step_v: float = 0.04
    """After a RESET without visible response, the next one is at least this much higher, V."""
    reset_noise_rel: float = 0.2
    """Cycle-to-cycle noise of a RESET step, relative to the step (weights what a response
    teaches)."""
    reset_noise_floor_siemens: float = 0.1e-6
    """Cycle-to-cycle noise floor of a RESET step, S."""
    max_iterations: int = 2000
    min_iteration_s: float = 0.05
    """While devices only wait (for relaxation or more reads), read at most this often."""
    max_time_s: float = 600.0
    """Stop (devices left unfinished) after this long in one session."""

    def __post_init__(self) -> None:
        checks = {
            "inner_fraction": 0 < self.inner_fraction <= 1, "settle_s": self.settle_s >= 0,
            "verify_delay_s": self.verify_delay_s >= 0, "small_change": self.small_change >= 0,
            "settle_small_s": 0 <= self.settle_small_s <= self.settle_s,
            "verify_delay_small_s": 0 <= self.verify_delay_small_s <= self.verify_delay_s,
            "verify_reads": self.verify_reads >= 1, "verify_sigmas": self.verify_sigmas >= 0,
            "average_reads": self.average_reads >= 1, "coarse_factor": self.coarse_factor >= 1,
            "coarse_sigmas": self.coarse_sigmas >= 0,
            "read_noise_rel": (self.read_noise_rel is None
                               or self.read_noise_rel in RANGES["read_noise_rel"]),
            "read_bias_rel": 0 <= self.read_bias_rel < 1, "max_pulses": self.max_pulses >= 1,
            "max_no_response": self.max_no_response >= 1, "set_margin": self.set_margin >= 0,
            "reset_min_step": self.reset_min_step >= 0,
            "off_floor_resets": self.off_floor_resets >= 0, "gate_step_v": self.gate_step_v > 0,
            "reset_shift_sigma_v": self.reset_shift_sigma_v > 0,
            "reset_slope_sigma": self.reset_slope_sigma > 0,
            "reset_noise_rel": self.reset_noise_rel >= 0, "reset_step_v": self.reset_step_v >= 0,
            "reset_noise_floor_siemens": self.reset_noise_floor_siemens >= 0,
            "reset_margin": 0 <= self.reset_margin < self.inner_fraction,
            "max_iterations": self.max_iterations >= 1,
            "min_iteration_s": self.min_iteration_s >= 0, "max_time_s": self.max_time_s > 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise BadInput("bad programming setting(s): "
                           + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))

    def with_read_noise(self, measured_rel: float | None) -> ProgramSettings:
        """These settings with `read_noise_rel` a number: as set, else `measured_rel` (what the
        calibration measured), else DEFAULT_READ_NOISE_REL."""
        if self.read_noise_rel is not None:
            return self
        return replace(self, read_noise_rel=DEFAULT_READ_NOISE_REL if measured_rel is None
                       else float(measured_rel))
