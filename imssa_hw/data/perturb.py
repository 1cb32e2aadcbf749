"""Training-time perturbations of recorded clips, so that a model learns the words rather than
its few training speakers: speed, tempo, frequency warp, tempo warp, channel tilt, band-limit,
room response, noise at several SNRs, gain and time shift.

`AugmentSpec` holds the knobs; `perturbed_features` turns one clip into one perturbed feature
sequence. Each draw takes its randomness from the `np.random.Generator` it is given, so a copy
is a pure function of its seed. SpecAugment-style masks are applied in training (they are
cheap on the feature arrays): see `imssa_hw.training.trainer`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from imssa_hw.data import augment
from imssa_hw.data.features import (FeatureConfig, as_mono_float, compute_features, resample,
                                    uniform_positions)
from imssa_hw.data.knobs import Knobs
from imssa_hw.errors import BadInput

SPEED_STEPS = 40  # speed factors are rounded to 1/40 so resampling filters are reused


@dataclass(frozen=True)
class AugmentSpec(Knobs):
    """How many perturbed copies of each training clip, and the range of every perturbation.

    Each (low, high) pair is drawn uniformly per copy; each `*_prob` is the chance that a copy
    gets that perturbation.
    """

    copies: int = 4
    """Perturbed copies per training clip (the clean clip is kept as well); 0 turns it off."""
    speed: tuple[float, float] = (0.85, 1.15)
    """Resampling factor: tempo, pitch and formants move together."""
    tempo: tuple[float, float] = (0.75, 1.33)
    """Tempo alone, pitch and formants kept (drawn log-uniformly): the frames sample the word
    this many times faster, about its centre. Speakers differ in rate by more than the speed
    range covers (docs/data.md)."""
    warp: tuple[float, float] = (0.9, 1.1)
    """Mel filterbank warp (vocal tract length perturbation)."""
    tempo_warp: float = 0.1
    """Largest shift of the middle frame's position (fraction of the word): uneven tempo."""
    shift: float = 0.05
    """Largest shift of the first and last frame (fraction of the word): where it starts and ends."""
    tilt_prob: float = 0.5
    tilt: tuple[float, float] = (-0.6, 0.6)
    """First-order channel filter x[n] - a x[n-1]: a microphone's spectral tilt."""
    band_limit_prob: float = 0.15
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.1, 0.5)
    drr_db: tuple[float, float] = (0.0, 15.0)
    noise_prob: float = 0.6
    snr_db: tuple[float, float] = (5.0, 30.0)
    gain_db: tuple[float, float] = (-20.0, 20.0)

    WHAT: ClassVar[str] = "augmentation settings"

    def __post_init__(self) -> None:
        if isinstance(self.copies, bool) or int(self.copies) != self.copies or self.copies < 0:
            raise BadInput(f"augmentation copies must be a non-negative integer, got {self.copies}")
        self._check_ranges()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= float(value) <= 1.0:
                raise BadInput(f"augmentation {f.name} must be in 0..1, got {value}")
        if not all(0 < low for low in (self.speed[0], self.tempo[0], self.warp[0], self.rt60_s[0])):
            raise BadInput("augmentation speed, tempo, warp and rt60_s must be positive")
        if not (0 <= self.tempo_warp < 0.5 and 0 <= self.shift < 0.5):
            raise BadInput("augmentation tempo_warp and shift must be in 0..0.5")



def _positions(n_frames: int, spec: AugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """Frame positions with a shifted start and end and a piecewise-linear tempo warp."""
    t = uniform_positions(n_frames)
    middle = 0.5 + rng.uniform(-spec.tempo_warp, spec.tempo_warp)
    warped = np.where(t < 0.5, t / 0.5 * middle, middle + (t - 0.5) / 0.5 * (1 - middle))
    first, last = rng.uniform(-spec.shift, spec.shift), 1 + rng.uniform(-spec.shift, spec.shift)
    tempo = np.exp(rng.uniform(*np.log(spec.tempo)))
    return 0.5 + (first + warped * (last - first) - 0.5) * tempo


def perturbed_features(audio: np.ndarray, sample_rate_hz: int, cfg: FeatureConfig,
                       spec: AugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """Features of one randomly perturbed copy of a clip (see `AugmentSpec`)."""
    a = resample(as_mono_float(audio), sample_rate_hz, cfg.sample_rate_hz)
    rate = cfg.sample_rate_hz
    speed = round(rng.uniform(*spec.speed) * SPEED_STEPS) / SPEED_STEPS
    if speed != 1.0:  # play `speed` times faster: fewer samples at the same rate
        a = resample(a, int(round(rate * speed)), rate)
    if rng.uniform() < spec.tilt_prob:
        from scipy.signal import lfilter  # a second to import: only when used

        a = lfilter([1.0, -rng.uniform(*spec.tilt)], [1.0], a).astype(np.float32)
    if rng.uniform() < spec.band_limit_prob:
        a = augment.band_limit(a, rate, rng.uniform(100.0, 400.0), rng.uniform(2500.0, 3800.0))
    power = float(np.mean(np.square(a, dtype=np.float64))) + 1e-20
    if rng.uniform() < spec.reverb_prob:
        a = augment.reverberate(a, rate, rng.uniform(*spec.rt60_s), rng.uniform(*spec.drr_db), rng)
    if rng.uniform() < spec.noise_prob:
        kind = ("white", "pink")[int(rng.integers(2))]
        a = augment.add_noise(a, augment.make_noise(kind, len(a), rng), rng.uniform(*spec.snr_db),
                              power)
    a = a * np.float32(10 ** (rng.uniform(*spec.gain_db) / 20))
    warp = float(rng.uniform(*spec.warp)) if cfg.kind == "logmel" else 1.0
    return compute_features(a, rate, cfg, positions=_positions(cfg.n_frames, spec, rng),
                            warp=round(warp, 2))
