"""Features: config round trip and validation, log-mel and waveform shapes, sample-rate and
level invariance, speech trimming and padding, normalization."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imssa_hw.data import FeatureConfig, apply_normalization, compute_features, fit_normalization
from imssa_hw.data.features import mel_filterbank, speech_span
from imssa_hw.errors import BadInput

RATE_TOLERANCE_NEPERS = (0.25, 0.01)
"""48, 16 and 8 kHz renderings of one clip give features within these (max abs and mean abs,
in nepers of band energy, 1 neper = 4.3 dB). Measured: 0.21 / 0.003 at 8 kHz, where the top
bands (3.5-3.8 kHz, 55 dB under the peak) meet the 48 -> 8 kHz anti-alias filter; 0.013 /
0.0004 at 16 kHz."""


def tone(freq_hz: float, rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def vowel(rate_hz: int, seconds: float = 0.4, lead_s: float = 0.3) -> np.ndarray:
    """A word-like clip rendered at `rate_hz` from one continuous-time formula: silence, then a
    gliding 120 -> 90 Hz voice (harmonics under 3.5 kHz, two moving formants, rise and decay),
    then silence. Every rate samples the same signal; none is resampled from another."""
    t = np.arange(int(rate_hz * (2 * lead_s + seconds))) / rate_hz - lead_s
    inside = (t >= 0) & (t < seconds)
    u = np.clip(t / seconds, 0, 1)
    phase = 2 * np.pi * (120 * t - 15 * seconds * u ** 2)  # f0 120 -> 90 Hz
    f1, f2 = 700 - 300 * u, 1200 + 900 * u
    signal = np.zeros_like(t)
    for k in range(1, 30):
        fk = k * (120 - 30 * u)
        gain = np.exp(-((fk - f1) / 150) ** 2) + 0.5 * np.exp(-((fk - f2) / 200) ** 2) + 0.02
        signal += np.where(fk < 3500, gain, 0.0) * np.sin(k * phase)
    envelope = np.sin(np.pi * u) ** 0.5 * inside
    return (0.2 * signal * envelope / np.abs(signal).max()).astype(np.float32)


def test_config_round_trip_through_json():
    cfg = FeatureConfig(n_mels=20, sample_rate_hz=16000, hop_s=0.02, n_frames=40, fmax_hz=6000.0,
                        timing="fixed", trim_db=None)
    again = FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert FeatureConfig.from_dict({}) == FeatureConfig()
    assert FeatureConfig().n_features == 32 and FeatureConfig().n_frames == 32


@pytest.mark.parametrize("bad", [{"kind": "mfcc"}, {"n_mels": 0}, {"fmax_hz": 4500.0},
                                 {"hop_s": 0.0}, {"timing": "middle"}, {"floor_db": 0},
                                 {"trim_db": -3}, {"kind": "waveform", "timing": "stretch"},
                                 {"bogus": 1}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(BadInput):
        FeatureConfig.from_dict(bad)


def test_no_band_is_empty_and_none_lies_above_nyquist():
    cfg = FeatureConfig()
    bank = mel_filterbank(cfg.sample_rate_hz, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax)
    assert (bank.max(axis=0) > 0.5).all()  # every band has a bin near its peak
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate_hz / cfg.n_fft
    assert freqs[bank.any(axis=1)].max() <= 3800.0 < 8000 / 2


def test_logmel_shape_dtype_and_tone_band():
    cfg = FeatureConfig()
    feats = compute_features(tone(1000.0, 16000), 16000, cfg)
    assert feats.shape == (32, 32) and feats.dtype == np.float32
    bank = mel_filterbank(cfg.sample_rate_hz, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax)
    expected = int(np.argmax(bank[int(round(1000 * cfg.n_fft / cfg.sample_rate_hz))]))
    assert np.all(np.argmax(feats, axis=1) == expected)
    assert np.isclose(feats.max(), np.log(1 + 1e-6), atol=1e-4)  # relative to the clip's peak


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_renderings_at_any_rate_give_the_same_features(rate):
    """The same clip sampled at 8 to 48 kHz: features agree within RATE_TOLERANCE_NEPERS."""
    cfg = FeatureConfig()
    ref = compute_features(vowel(48000), 48000, cfg)
    other = compute_features(vowel(rate), rate, cfg)
    assert np.abs(other - ref).max() < RATE_TOLERANCE_NEPERS[0]
    assert np.abs(other - ref).mean() < RATE_TOLERANCE_NEPERS[1]


def test_a_source_below_the_band_is_refused():
    with pytest.raises(BadInput, match="sampled at 6000 Hz, with nothing above 3000 Hz"):
        compute_features(tone(500.0, 6000), 6000, FeatureConfig())


@pytest.mark.parametrize("timing", ["stretch", "fixed"])
def test_level_does_not_change_the_features(timing):
    cfg = FeatureConfig(timing=timing)
    clip = vowel(16000)
    noisy = clip + 1e-3 * np.random.default_rng(0).standard_normal(len(clip)).astype(np.float32)
    for x in (clip, noisy):
        loud, quiet = compute_features(x, 16000, cfg), compute_features(0.05 * x, 16000, cfg)
        assert np.abs(loud - quiet).max() < 1e-3


def test_a_short_clip_is_not_mostly_padding():
    """0.25 s of speech in 1.5 s of faint noise: the (default) fixed timing centres the word,
    and every frame of the stretch timing lies on it."""
    rate = 16000
    word = vowel(rate, seconds=0.25, lead_s=0.0)
    clip = 1e-4 * np.random.default_rng(1).standard_normal(int(1.5 * rate)).astype(np.float32)
    clip[rate // 2:rate // 2 + len(word)] += word
    start, stop = speech_span(clip, rate, FeatureConfig().trim_db)
    assert abs(start - rate // 2) < 0.05 * rate and abs(stop - (rate // 2 + len(word))) < 0.05 * rate
    stretch = compute_features(clip, rate, FeatureConfig(timing="stretch"))
    frame_energy = np.log(np.exp(stretch).sum(axis=1))
    assert (frame_energy > frame_energy.max() - np.log(1e3)).all()  # all within 30 dB
    fixed = compute_features(clip, rate, FeatureConfig(timing="fixed"))
    loud = np.flatnonzero(np.log(np.exp(fixed).sum(axis=1)) > frame_energy.max() - np.log(1e3))
    assert 8 <= loud.mean() <= 23  # the word sits in the middle of the 32 frames


def test_integer_pcm_and_stereo_are_accepted():
    x = tone(500.0, 16000)
    pcm = (x * 32767).astype(np.int16)
    stereo = np.stack([x, x], axis=1)
    cfg = FeatureConfig()
    ref = compute_features(x, 16000, cfg)
    assert np.array_equal(compute_features(pcm, 16000, cfg),
                          compute_features(pcm.astype(np.float32) / 32768, 16000, cfg))
    assert np.allclose(compute_features(stereo, 16000, cfg), ref, atol=1e-5)


def test_silence_gives_the_floor():
    feats = compute_features(np.zeros(8000, np.float32), 8000, FeatureConfig())
    assert np.allclose(feats, np.log(10 ** (-FeatureConfig().floor_db / 10)))


def test_waveform_kind_frames_the_downsampled_signal():
    cfg = FeatureConfig(kind="waveform", sample_rate_hz=1000, hop_s=0.016, n_frames=50,
                        timing="fixed")
    feats = compute_features(tone(50.0, 16000), 16000, cfg)
    assert feats.shape == (50, 16) and cfg.n_features == 16
    flat = feats.reshape(-1)
    spectrum = np.abs(np.fft.rfft(flat))
    assert np.argmax(spectrum) == round(50 * len(flat) / 1000)  # contiguous 50 Hz samples
    assert 0.95 < np.abs(flat).max() <= 1.0 + 1e-6  # peak normalized
    single = FeatureConfig(kind="waveform", sample_rate_hz=1000, hop_s=0.001, n_frames=1000,
                           timing="fixed")
    assert compute_features(tone(50.0, 16000), 16000, single).shape == (1000, 1)


def test_normalization_is_per_feature():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((20, 8, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 0.0]).astype(np.float32)
    norm = fit_normalization(x)
    z = apply_normalization(x, norm)
    assert z.dtype == np.float32
    assert np.allclose(z.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    assert np.allclose(z.reshape(-1, 3).std(axis=0), 1, atol=1e-4)
    assert json.loads(json.dumps(norm)) == norm
