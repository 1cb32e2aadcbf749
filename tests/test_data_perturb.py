"""Perturbed copies of training clips: seeded, each perturbation does what it says, bad knobs
are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from imssa_hw.data import AugmentSpec, FeatureConfig, compute_features
from imssa_hw.data.perturb import perturbed_features
from imssa_hw.errors import BadInput

NOTHING = AugmentSpec(speed=(1.0, 1.0), tempo=(1.0, 1.0), warp=(1.0, 1.0), tempo_warp=0.0,
                      shift=0.0, tilt_prob=0.0, band_limit_prob=0.0, reverb_prob=0.0,
                      noise_prob=0.0, gain_db=(0.0, 0.0))
"""Every perturbation off: a copy is the clip's own features."""


def chirp(rate_hz: int = 8000, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * (300 * t + 1500 * t ** 2)) * np.hanning(len(t))).astype(np.float32)


def test_a_copy_is_a_pure_function_of_its_seed():
    cfg, spec = FeatureConfig(), AugmentSpec()
    a = perturbed_features(chirp(), 8000, cfg, spec, np.random.default_rng(5))
    b = perturbed_features(chirp(), 8000, cfg, spec, np.random.default_rng(5))
    c = perturbed_features(chirp(), 8000, cfg, spec, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.shape == (32, 32) and a.dtype == np.float32 and np.isfinite(a).all()


def test_with_every_perturbation_off_a_copy_is_the_clip():
    cfg = FeatureConfig()
    copy = perturbed_features(chirp(), 8000, cfg, NOTHING, np.random.default_rng(0))
    assert np.allclose(copy, compute_features(chirp(), 8000, cfg), atol=1e-5)


def test_a_faster_copy_moves_every_band_up():
    """speed 1.25: the chirp's frequencies rise by 25 %, so its loudest band moves up (frame
    by frame: the stretch timing lines the frames up with the shorter word)."""
    cfg = FeatureConfig(timing="stretch")
    fast = perturbed_features(chirp(), 8000, cfg, dataclasses.replace(NOTHING, speed=(1.25, 1.25)),
                              np.random.default_rng(0))
    plain = compute_features(chirp(), 8000, cfg)
    assert (fast.argmax(axis=1)[4:-4] >= plain.argmax(axis=1)[4:-4]).all()
    assert fast.argmax(axis=1).sum() > plain.argmax(axis=1).sum()


def test_tempo_changes_the_words_length_not_its_spectrum():
    """tempo 1.33: the word covers a quarter fewer of the fixed frames, 0.75: a third more; each
    band's loudest value over the word (the spectrum's envelope) stays where it was."""
    cfg = FeatureConfig()
    plain = compute_features(chirp(seconds=0.3), 8000, cfg)

    def at(tempo: float) -> np.ndarray:
        return perturbed_features(chirp(seconds=0.3), 8000, cfg, dataclasses.replace(
            NOTHING, tempo=(tempo, tempo)), np.random.default_rng(0))

    def frames_of_speech(x: np.ndarray) -> int:
        return int((x.max(axis=1) > x.min() + 3).sum())
    fast, slow = at(1.33), at(0.75)
    assert frames_of_speech(fast) < 0.85 * frames_of_speech(plain)
    assert frames_of_speech(slow) > 1.2 * frames_of_speech(plain)
    for x in (fast, slow):
        assert np.abs(x.max(axis=0) - plain.max(axis=0)).max() < 1.0


def test_noise_fills_the_floor():
    cfg = FeatureConfig()
    noisy = perturbed_features(chirp(), 8000, cfg, dataclasses.replace(
        NOTHING, noise_prob=1.0, snr_db=(5.0, 5.0)), np.random.default_rng(0))
    plain = compute_features(chirp(), 8000, cfg)
    assert noisy.min() > plain.min() + 2  # the quiet bands now hold noise


@pytest.mark.parametrize("bad", [{"copies": -1}, {"copies": 1.5}, {"speed": (1.2, 0.8)},
                                 {"noise_prob": 2.0}, {"warp": (0.0, 1.0)}, {"tempo": (0.0, 1.0)},
                                 {"shift": 0.6},
                                 {"snr_db": "loud"}])
def test_bad_knobs_are_refused(bad):
    with pytest.raises(BadInput):
        AugmentSpec(**bad)


def test_spec_round_trip():
    spec = AugmentSpec(copies=3, snr_db=(0.0, 10.0))
    assert AugmentSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(BadInput, match=r"unknown key\(s\) in the augmentation settings: pitch"):
        AugmentSpec.from_dict({"pitch": 1})
