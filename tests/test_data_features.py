"""Features: config round trip and validation, log-mel and waveform shapes, resampling, cropping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imssa_hw.data import FeatureConfig, apply_normalization, compute_features, fit_normalization
from imssa_hw.data.features import fit_length, mel_filterbank
from imssa_hw.errors import BadInput


def tone(freq_hz: float, rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_config_round_trip_through_json():
    cfg = FeatureConfig(n_mels=20, hop_s=0.02, n_frames=40, fmax_hz=6000.0, crop="start")
    again = FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert FeatureConfig.from_dict({}) == FeatureConfig()
    assert FeatureConfig().n_features == 32 and FeatureConfig().n_frames == 32


@pytest.mark.parametrize("bad", [{"kind": "mfcc"}, {"n_mels": 0}, {"fmax_hz": 9000.0},
                                 {"hop_s": 0.0}, {"crop": "middle"}, {"bogus": 1}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(BadInput):
        FeatureConfig.from_dict(bad)


def test_logmel_shape_dtype_and_tone_band():
    cfg = FeatureConfig()
    feats = compute_features(tone(1000.0, 16000), 16000, cfg)
    assert feats.shape == (32, 32) and feats.dtype == np.float32
    bank = mel_filterbank(16000, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax)
    expected = int(np.argmax(bank[int(round(1000 * cfg.n_fft / 16000))]))
    assert np.all(np.argmax(feats[5:55], axis=1) == expected)


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_other_sample_rates_give_the_same_band(rate):
    cfg = FeatureConfig()
    ref = compute_features(tone(1000.0, 16000), 16000, cfg)
    other = compute_features(tone(1000.0, rate), rate, cfg)
    assert np.argmax(other[30]) == np.argmax(ref[30])
    assert abs(other[30].max() - ref[30].max()) < 0.5  # same level within 0.5 nepers


def test_integer_pcm_and_stereo_are_accepted():
    x = tone(500.0, 16000)
    pcm = (x * 32767).astype(np.int16)
    stereo = np.stack([x, x], axis=1)
    cfg = FeatureConfig()
    ref = compute_features(x, 16000, cfg)
    assert np.array_equal(compute_features(pcm, 16000, cfg),
                          compute_features(pcm.astype(np.float32) / 32768, 16000, cfg))
    assert np.allclose(compute_features(stereo, 16000, cfg), ref, atol=1e-5)


def test_waveform_kind_frames_the_downsampled_signal():
    cfg = FeatureConfig(kind="waveform", sample_rate_hz=1000, hop_s=0.016, n_frames=50, crop="start")
    feats = compute_features(tone(50.0, 16000), 16000, cfg)
    assert feats.shape == (50, 16) and cfg.n_features == 16
    flat = feats.reshape(-1)
    assert np.corrcoef(flat[100:700], tone(50.0, 1000)[100:700])[0, 1] > 0.99
    single = FeatureConfig(kind="waveform", sample_rate_hz=1000, hop_s=0.001, n_frames=1000)
    assert compute_features(tone(50.0, 16000), 16000, single).shape == (1000, 1)


def test_crop_and_pad():
    quiet_loud = np.concatenate([np.zeros(1000), np.ones(100), np.zeros(1000)]).astype(np.float32)
    assert fit_length(quiet_loud, 200, "energy").sum() == 100
    assert fit_length(quiet_loud, 200, "start").sum() == 0
    padded = fit_length(np.ones(10, np.float32), 15, "energy")
    assert padded.shape == (15,) and padded[10:].sum() == 0


def test_normalization_is_per_feature():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((20, 8, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 0.0]).astype(np.float32)
    norm = fit_normalization(x)
    z = apply_normalization(x, norm)
    assert z.dtype == np.float32
    assert np.allclose(z.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    assert np.allclose(z.reshape(-1, 3).std(axis=0), 1, atol=1e-4)
    assert json.loads(json.dumps(norm)) == norm
