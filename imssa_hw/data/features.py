"""Feature extraction: log-mel frames or a downsampled waveform, fixed length L.

`FeatureConfig` holds every setting needed to turn new audio into the same features a model was
trained on; `compute_features` applies it to one clip. The features of a clip do not depend on
its level (log energies relative to the clip's own peak) nor, within the analysis band, on its
sample rate (8 to 48 kHz give the same features). Normalization (per-feature mean/std of the
training split) is a separate step: `fit_normalization` / `apply_normalization`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from imssa_hw.config import Config
from imssa_hw.errors import BadInput

KINDS = ("logmel", "waveform")
TIMINGS = ("stretch", "fixed")
VAD_FRAME_S = 0.010  # frame of the energy trim
VAD_MARGIN_S = 0.020  # kept on each side of the speech found


@dataclass(frozen=True)
class FeatureConfig(Config):
    """How audio becomes an (L, F) feature sequence; each of the L frames is one crossbar step.

    The clip is resampled to `sample_rate_hz` and trimmed to its speech: from the first to the
    last 10 ms frame within `trim_db` of the loudest (plus 20 ms each side; None keeps the whole
    clip). kind "logmel": `n_mels` log mel-band energies (HTK mel, `fmin_hz`..`fmax_hz`) of
    `win_s` Hann windows, in nepers relative to the clip's loudest band, floored `floor_db`
    below it. timing "fixed" puts the `n_frames` windows `hop_s` apart with the speech centred
    (padding is the clip's floor; a clip longer than the span keeps its span of most energy);
    "stretch" spreads them evenly over the speech, whatever its duration (measured worse on
    real speech: docs/data.md). kind "waveform": the signal at `sample_rate_hz`, peak
    normalized, centred, cut into non-overlapping frames of `hop_s` (F = hop_s *
    sample_rate_hz samples per step); it uses the fixed timing.
    """

    WHAT: ClassVar[str] = "feature config"

    kind: str = "logmel"
    sample_rate_hz: int = 8000
    n_frames: int = 32
    win_s: float = 0.032
    hop_s: float = 0.016
    n_mels: int = 32
    fmin_hz: float = 60.0
    fmax_hz: float | None = 3800.0
    floor_db: float = 60.0
    trim_db: float | None = 40.0
    timing: str = "fixed"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"feature kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.timing not in TIMINGS:
            raise BadInput(f"feature timing {self.timing!r} is not one of {', '.join(TIMINGS)}")
        if int(self.sample_rate_hz) != self.sample_rate_hz or self.sample_rate_hz < 100:
            raise BadInput(f"feature sample_rate_hz must be an integer >= 100, got {self.sample_rate_hz}")
        if int(self.n_frames) != self.n_frames or self.n_frames < 1:
            raise BadInput(f"feature n_frames must be a positive integer, got {self.n_frames}")
        if not self.hop_s > 0 or self.hop_samples < 1:
            raise BadInput(f"feature hop_s={self.hop_s} is shorter than one sample")
        if self.trim_db is not None and not self.trim_db > 0:
            raise BadInput(f"feature trim_db must be > 0 or None, got {self.trim_db}")
        if self.kind == "logmel":
            if not self.win_s > 0 or self.win_samples < 2:
                raise BadInput(f"feature win_s={self.win_s} is shorter than two samples")
            if int(self.n_mels) != self.n_mels or self.n_mels < 1:
                raise BadInput(f"feature n_mels must be a positive integer, got {self.n_mels}")
            if not 0 <= self.fmin_hz < self.fmax:
                raise BadInput(f"feature band {self.fmin_hz}..{self.fmax} Hz is empty")
            if self.fmax > self.sample_rate_hz / 2:
                raise BadInput(f"feature fmax_hz={self.fmax_hz} is above the Nyquist frequency")
            if not self.floor_db > 0:
                raise BadInput(f"feature floor_db must be > 0, got {self.floor_db}")
        elif self.timing != "fixed":
            raise BadInput("waveform features use timing 'fixed'")

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
        return int(round(self.win_s * self.sample_rate_hz)) if self.kind == "logmel" else self.hop_samples

    @property
    def n_fft(self) -> int:
        return 1 << max(1, math.ceil(math.log2(self.win_samples)))

    @property
    def n_features(self) -> int:
        """F, the width of one frame."""
        return self.n_mels if self.kind == "logmel" else self.hop_samples

    @property
    def span_samples(self) -> int:
        """Samples (at `sample_rate_hz`) that `n_frames` frames cover with the fixed timing."""
        return self.win_samples + (self.n_frames - 1) * self.hop_samples

    @property
    def lowest_source_rate_hz(self) -> float:
        """Audio sampled below this rate has nothing in the top band: refused."""
        return 2 * self.fmax if self.kind == "logmel" else float(self.sample_rate_hz)


@functools.lru_cache(maxsize=32)
def _antialias_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's default low-pass (Kaiser, beta 5), designed once per ratio."""
    from scipy.signal import firwin  # scipy.signal takes a second to import: only when used

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
    from scipy.signal import resample_poly

    return resample_poly(audio, up, down, window=_antialias_filter(up, down)).astype(np.float32, copy=False)


def as_mono_float(audio: np.ndarray) -> np.ndarray:
    """float32 mono samples of float or integer PCM audio, 1-D or (n, channels)."""
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=1)  # (n, channels), as soundfile reads it
    if a.ndim != 1:
        raise BadInput(f"audio must be 1-D (or 2-D with channels), got shape {np.shape(audio)}")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    return a.astype(np.float32, copy=False)


def speech_span(audio: np.ndarray, sample_rate_hz: int, trim_db: float | None) -> tuple[int, int]:
    """(start, stop) samples of the speech: the 10 ms frames within `trim_db` of the loudest,
    first to last, plus a 20 ms margin each side; the whole clip when `trim_db` is None."""
    n = len(audio)
    frame = max(1, int(round(VAD_FRAME_S * sample_rate_hz)))
    if trim_db is None or n < 2 * frame:
        return 0, n
    count = n // frame
    energy = np.square(audio[:count * frame].astype(np.float64)).reshape(count, frame).sum(axis=1)
    peak = energy.max()
    if not peak > 0:
        return 0, n
    loud = np.flatnonzero(energy >= peak * 10 ** (-trim_db / 10))
    margin = int(round(VAD_MARGIN_S * sample_rate_hz))
    return max(0, loud[0] * frame - margin), min(n, (loud[-1] + 1) * frame + margin)


def uniform_positions(n_frames: int) -> np.ndarray:
    """Frame positions 0..1, evenly spaced: what `compute_features` uses unless told."""
    return np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)


def frame_starts(span: tuple[int, int], cfg: FeatureConfig, positions: np.ndarray,
                 energy: np.ndarray | None = None) -> np.ndarray:
    """First sample of each of the n_frames windows (may lie outside the clip: zero padding).

    `positions` (n_frames values, 0..1, increasing) place the windows: over the speech span for
    the stretch timing, over the fixed span for the fixed timing. `energy` (cumulative sum of
    squares of the clip, with a leading 0) picks the loudest fixed span of a long clip.
    """
    start, stop = span
    win = cfg.win_samples
    if cfg.timing == "stretch":
        room = max(0, stop - start - win)
        first = start if stop - start > win else (start + stop - win) // 2
        return (first + np.round(positions * room)).astype(np.int64)
    span_len = cfg.span_samples
    extra = (stop - start) - span_len
    if extra <= 0:
        offset = start + extra // 2  # centred; extra // 2 <= 0
    else:
        window_energy = energy[start + span_len:stop + 1] - energy[start:stop - span_len + 1]
        offset = start + int(np.argmax(window_energy))
    return (offset + np.round(positions * (cfg.n_frames - 1) * cfg.hop_samples)).astype(np.int64)


@functools.lru_cache(maxsize=64)
def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float,
                   fmax_hz: float, warp: float = 1.0) -> np.ndarray:
    """(n_fft//2+1, n_mels) triangular filters, equally spaced on the HTK mel scale, peak 1.

    `warp` != 1 moves every band edge to edge * warp (vocal tract length perturbation: a
    speaker whose formants lie `warp` times higher); used by augmentation only.
    """
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin_hz), mel(fmax_hz), n_mels + 2)) * warp
    freqs = np.arange(n_fft // 2 + 1) * sample_rate_hz / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    bank = np.clip(np.minimum(up, down), 0.0, None)
    bank = np.ascontiguousarray(bank.T, dtype=np.float32)
    bank.setflags(write=False)
    return bank


def check_source_rate(sample_rate_hz: int, cfg: FeatureConfig, what: str = "audio") -> None:
    """BadInput (one line naming `what`) unless audio sampled at `sample_rate_hz` reaches the top
    band of `cfg`'s features (`FeatureConfig.lowest_source_rate_hz`)."""
    if sample_rate_hz < cfg.lowest_source_rate_hz:
        raise BadInput(f"{what} is sampled at {sample_rate_hz} Hz, with nothing above "
                       f"{sample_rate_hz / 2:g} Hz; these features need up to {cfg.fmax:g} Hz "
                       f"(a source rate of at least {cfg.lowest_source_rate_hz:g} Hz)")


def compute_features(audio: np.ndarray, sample_rate_hz: int, cfg: FeatureConfig,
                     positions: np.ndarray | None = None, warp: float = 1.0) -> np.ndarray:
    """(L, F) float32 features of one clip, before normalization.

    `audio` is mono (or (n, channels)), float in [-1, 1] or integer PCM, at `sample_rate_hz`
    (at least `cfg.lowest_source_rate_hz`). `positions` and `warp` are augmentation hooks
    (a tempo warp: see `frame_starts`; a filterbank warp: see `mel_filterbank`).
    """
    check_source_rate(sample_rate_hz, cfg)
    a = resample(as_mono_float(audio), int(sample_rate_hz), cfg.sample_rate_hz)
    span = speech_span(a, cfg.sample_rate_hz, cfg.trim_db)
    positions = uniform_positions(cfg.n_frames) if positions is None else positions
    energy = np.concatenate([[0.0], np.cumsum(np.square(a, dtype=np.float64))])
    starts = frame_starts(span, cfg, positions, energy)
    win = cfg.win_samples
    pad = max(0, -int(starts.min()), int(starts.max()) + win - len(a))
    padded = np.pad(a, (pad, pad))
    frames = padded[(starts + pad)[:, None] + np.arange(win)[None, :]]
    if cfg.kind == "waveform":
        peak = float(np.abs(a).max()) if len(a) else 0.0
        return (frames / peak if peak > 0 else frames).astype(np.float32)
    window = np.hanning(win + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, n=cfg.n_fft, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    bank = mel_filterbank(cfg.sample_rate_hz, cfg.n_fft, cfg.n_mels, float(cfg.fmin_hz), cfg.fmax,
                          float(warp))
    mel = (power @ bank).astype(np.float64)
    peak = mel.max()
    relative = mel / peak if peak > 0 else mel
    return np.log(relative + 10 ** (-cfg.floor_db / 10)).astype(np.float32)


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
