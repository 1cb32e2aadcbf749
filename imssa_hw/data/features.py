"""Feature extraction: log-mel frames or a downsampled waveform, fixed length L.

`FeatureConfig` holds every setting needed to turn new audio into the same features a model was
trained on; `compute_features` applies it to one clip. Normalization (per-feature mean/std of the
training split) is a separate step: `fit_normalization` / `apply_normalization`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.signal import firwin, resample_poly

from imssa_hw.errors import BadInput

KINDS = ("logmel", "waveform")
CROPS = ("energy", "start", "center")


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes an (L, F) feature sequence; each of the L frames is one crossbar step.

    kind "logmel": `n_mels` log mel-band energies of `win_s` Hann windows every `hop_s`.
    kind "waveform": the signal resampled to `sample_rate_hz`, cut into non-overlapping frames
    of `hop_s` (F = hop_s * sample_rate_hz samples per step; F = 1 when hop_s = 1/sample_rate_hz).
    The audio is first cropped or zero-padded (at the end) to exactly the span of `n_frames`
    frames; `crop` picks which part of a longer clip is kept: the span of most energy, the start
    or the centre.
    """

    kind: str = "logmel"
    sample_rate_hz: int = 16000
    n_frames: int = 32
    win_s: float = 0.048
    hop_s: float = 0.032
    n_mels: int = 32
    fmin_hz: float = 50.0
    fmax_hz: float | None = None
    log_floor: float = 1e-8
    crop: str = "energy"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"feature kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.crop not in CROPS:
            raise BadInput(f"feature crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if int(self.sample_rate_hz) != self.sample_rate_hz or self.sample_rate_hz < 100:
            raise BadInput(f"feature sample_rate_hz must be an integer >= 100, got {self.sample_rate_hz}")
        if int(self.n_frames) != self.n_frames or self.n_frames < 1:
            raise BadInput(f"feature n_frames must be a positive integer, got {self.n_frames}")
        if not self.hop_s > 0 or self.hop_samples < 1:
            raise BadInput(f"feature hop_s={self.hop_s} is shorter than one sample")
        if self.kind == "logmel":
            if not self.win_s > 0 or self.win_samples < 2:
                raise BadInput(f"feature win_s={self.win_s} is shorter than two samples")
            if int(self.n_mels) != self.n_mels or self.n_mels < 1:
                raise BadInput(f"feature n_mels must be a positive integer, got {self.n_mels}")
            if not 0 <= self.fmin_hz < self.fmax:
                raise BadInput(f"feature band {self.fmin_hz}..{self.fmax} Hz is empty")
            if self.fmax > self.sample_rate_hz / 2:
                raise BadInput(f"feature fmax_hz={self.fmax_hz} is above the Nyquist frequency")
            if not self.log_floor > 0:
                raise BadInput(f"feature log_floor must be > 0, got {self.log_floor}")

    # Derived sizes -------------------------------------------------------------------------
    @property
    def fmax(self) -> float:
        """Upper band edge in Hz (`fmax_hz`, or Nyquist when it is None)."""
        return self.sample_rate_hz / 2 if self.fmax_hz is None else float(self.fmax_hz)

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_s * self.sample_rate_hz))

    @property
    def win_samples(self) -> int:
        return int(round(self.win_s * self.sample_rate_hz))

    @property
    def n_fft(self) -> int:
        return 1 << max(1, math.ceil(math.log2(self.win_samples)))

    @property
    def n_features(self) -> int:
        """F, the width of one frame."""
        return self.n_mels if self.kind == "logmel" else self.hop_samples

    @property
    def span_samples(self) -> int:
        """Samples (at `sample_rate_hz`) the `n_frames` frames cover."""
        if self.kind == "logmel":
            return self.win_samples + (self.n_frames - 1) * self.hop_samples
        return self.n_frames * self.hop_samples

    # Serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        """Inverse of `to_dict`; missing keys take defaults, unknown keys are BadInput."""
        if not isinstance(d, dict):
            raise BadInput(f"feature config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadInput(f"unknown feature config keys: {', '.join(unknown)}")
        return cls(**d)


@functools.lru_cache(maxsize=32)
def _antialias_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's default low-pass (Kaiser, beta 5), designed once per ratio."""
    rate = max(up, down)
    h = firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)
    h.setflags(write=False)
    return h


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """float32 polyphase resampling (scipy.signal.resample_poly) between integer rates."""
    audio = np.asarray(audio, np.float32)
    if int(from_hz) == int(to_hz):
        return audio
    ratio = Fraction(int(to_hz), int(from_hz))
    up, down = ratio.numerator, ratio.denominator
    return resample_poly(audio, up, down, window=_antialias_filter(up, down)).astype(np.float32, copy=False)


def _as_mono_float(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=1)  # (n, channels), as soundfile reads it
    if a.ndim != 1:
        raise BadInput(f"audio must be 1-D (or 2-D with channels), got shape {np.shape(audio)}")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    return a.astype(np.float32, copy=False)


def fit_length(audio: np.ndarray, n: int, crop: str) -> np.ndarray:
    """Crop `audio` to `n` samples (span of most energy / start / centre) or zero-pad its end."""
    if len(audio) < n:
        return np.concatenate([audio, np.zeros(n - len(audio), audio.dtype)])
    extra = len(audio) - n
    if crop == "start" or extra == 0:
        start = 0
    elif crop == "center":
        start = extra // 2
    else:
        energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
        start = int(np.argmax(energy[n:] - energy[:-n]))
    return audio[start:start + n]


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float,
                   fmax_hz: float) -> np.ndarray:
    """(n_fft//2+1, n_mels) triangular filters, equally spaced on the HTK mel scale, peak 1."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin_hz), mel(fmax_hz), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sample_rate_hz / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    bank = np.clip(np.minimum(up, down), 0.0, None)
    bank = np.ascontiguousarray(bank.T, dtype=np.float32)
    bank.setflags(write=False)
    return bank


def compute_features(audio: np.ndarray, sample_rate_hz: int, cfg: FeatureConfig) -> np.ndarray:
    """(L, F) float32 features of one clip, before normalization.

    `audio` is mono (or (n, channels)), float in [-1, 1] or integer PCM, at `sample_rate_hz`.
    """
    a = _as_mono_float(audio)
    a = resample(a, int(sample_rate_hz), cfg.sample_rate_hz)
    a = fit_length(a, cfg.span_samples, cfg.crop)
    if cfg.kind == "waveform":
        return a.reshape(cfg.n_frames, cfg.hop_samples).astype(np.float32)
    win, hop = cfg.win_samples, cfg.hop_samples
    frames = np.lib.stride_tricks.as_strided(
        a, shape=(cfg.n_frames, win), strides=(hop * a.strides[0], a.strides[0]), writeable=False)
    window = np.hanning(win + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, n=cfg.n_fft, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    bank = mel_filterbank(cfg.sample_rate_hz, cfg.n_fft, cfg.n_mels, float(cfg.fmin_hz), cfg.fmax)
    return np.log(power @ bank + cfg.log_floor).astype(np.float32)


def fit_normalization(x: np.ndarray) -> dict[str, list[float]]:
    """Per-feature mean and std over all samples and frames of `x` (n, L, F)."""
    flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-6)
    return {"mean": mean.tolist(), "std": std.tolist()}


def apply_normalization(x: np.ndarray, normalization: dict[str, list[float]]) -> np.ndarray:
    """(x - mean) / std per feature, float32; works on (L, F) or (n, L, F)."""
    mean = np.asarray(normalization["mean"], np.float32)
    std = np.asarray(normalization["std"], np.float32)
    return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32, copy=False)
