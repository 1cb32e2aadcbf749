"""Synthetic spoken digits: eSpeak NG, held-out voices, determinism, degradations."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from imssa_hw.data import augment, synth
from imssa_hw.data.synthetic import (ACCENTS, SAMPLE_RATE_HZ, VARIANTS, SynthSpec, iter_samples,
                                     voice_split)
from imssa_hw.data.tasks import TASK_DEFS
from imssa_hw.errors import BadInput

SPEC = TASK_DEFS["zero-one"].synth


def test_espeak_speaks_english_and_german():
    en, rate = synth.synthesize("zero", "en-us+f3")
    de, _ = synth.synthesize("fünf", "de+m3", rate_wpm=200, pitch=30, pitch_range=60)
    assert rate == 22050
    assert en.dtype == np.float32 and 0.15 * rate < len(en) < 1.5 * rate
    assert 0.05 < np.abs(en).max() <= 1.0 and np.abs(de).max() > 0.05
    assert synth.espeak_version()


def test_espeak_output_does_not_depend_on_history():
    """eSpeak NG keeps hidden state (flutter phase, gain control, echo); the helper hides it."""
    first, _ = synth.synthesize("zero", "en+f2", 150, 40, 60)
    synth.synthesize("sieben", "de+f5", 250, 80, 20, seed=9)
    synth.synthesize("three", "en+klatt2", 200, 10, 90, seed=3)
    again, _ = synth.synthesize("zero", "en+f2", 150, 40, 60)
    assert np.array_equal(first, again)


def test_espeak_rejects_unknown_voice():
    with pytest.raises(BadInput, match="no voice"):
        synth.synthesize("one", "xx-nowhere")


@pytest.mark.parametrize("language", ["english", "german"])
def test_held_out_voices_are_disjoint_and_cover_all(language):
    train, test = voice_split(language, SPEC, seed=0)
    assert train and test and not set(train) & set(test)
    assert len(train) + len(test) == len(ACCENTS[language]) * len(VARIANTS)
    test_variants = {v.split("+")[1] for v in test}
    train_variants = {v.split("+")[1] for v in train}
    assert len(test_variants - train_variants) == min(SPEC.holdout_variants, len(VARIANTS) - 1)
    assert voice_split(language, SPEC, seed=0) == (train, test)
    assert voice_split(language, SPEC, seed=1) != (train, test)


def test_no_hold_out_uses_every_voice_in_both_splits():
    spec = dataclasses.replace(SPEC, holdout_variants=0, holdout_accents=0)
    train, test = voice_split("english", spec, seed=0)
    assert train == test and len(train) == len(ACCENTS["english"]) * len(VARIANTS)


def _samples(seed: int, split: str = "train", labels=(0, 1), n: int = 4):
    return list(iter_samples(list(labels), split, n, SPEC, seed))


def test_generation_is_deterministic_and_seeded():
    a, b, c = _samples(0), _samples(0), _samples(1)
    assert all(np.array_equal(x[0], y[0]) and x[2] == y[2] for x, y in zip(a, b))
    assert not any(np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    assert [s[1] for s in a] == [0, 1] * 4
    clip = a[0][0]
    assert clip.dtype == np.float32 and clip.shape == (int(SPEC.clip_s * SAMPLE_RATE_HZ),)
    assert np.isfinite(clip).all()


def test_a_clip_does_not_depend_on_the_other_classes():
    both = _samples(0, labels=(0, 1), n=2)
    ones = _samples(0, labels=(1,), n=2)
    assert np.array_equal(both[1][0], ones[0][0]) and np.array_equal(both[3][0], ones[1][0])


def test_splits_use_only_their_own_voices():
    train_voices, test_voices = voice_split("english", SPEC, seed=3)
    used_train = {m["voice"] for _, _, m in _samples(3, "train", n=6)}
    used_test = {m["voice"] for _, _, m in _samples(3, "test", n=6)}
    assert used_train <= set(train_voices) and used_test <= set(test_voices)
    assert not used_train & used_test


def test_settings_follow_the_spec():
    spec = dataclasses.replace(SPEC, snr_db=(-3.0, -2.0), noise_kinds=("white",),
                               band_limit_prob=1.0, reverb_prob=0.0, onset_s=(0.1, 0.2))
    metas = [m for _, _, m in iter_samples([0, 1], "train", 3, spec, 0)]
    assert all(-3 <= m["snr_db"] <= -2 and m["noise"] == "white" for m in metas)
    assert all(m["band_hz"] is not None and m["reverb_rt60_s"] is None for m in metas)
    assert all(0.1 <= m["onset_s"] <= 0.2 for m in metas)


def test_add_noise_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(16000).astype(np.float32)
    noise = augment.make_noise("pink", 16000, rng)
    mixed = augment.add_noise(speech, noise, snr_db=-5.0)
    residual = mixed - speech
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(residual.astype(np.float64) ** 2))
    assert abs(snr + 5.0) < 0.01


def test_band_limit_and_reverb_change_the_signal():
    rng = np.random.default_rng(0)
    x = augment.white_noise(16000, rng)
    y = augment.band_limit(x, 16000, 300.0, 2000.0)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[(freqs > 500) & (freqs < 1500)].mean() > 100 * spec[freqs > 5000].mean()
    impulse = np.zeros(16000, np.float32)
    impulse[0] = 1
    wet = augment.reverberate(impulse, 16000, rt60_s=0.5, drr_db=0.0, rng=rng)
    tail = np.sum(wet[1:].astype(np.float64) ** 2)
    assert 0.8 < tail < 1.2  # drr 0 dB: tail energy equals the direct path's


@pytest.mark.parametrize("bad", [{"snr_db": (5, -5)}, {"noise_kinds": ("brown",)},
                                 {"reverb_prob": 1.5}, {"holdout_variants": -1}])
def test_spec_rejects_bad_knobs(bad):
    with pytest.raises(BadInput):
        dataclasses.replace(SPEC, **bad)


def test_spec_round_trip():
    assert SynthSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(BadInput, match="unknown"):
        SynthSpec.from_dict({"loudness": 3})


NO_FORK = "import os\nif hasattr(os, 'fork'):\n    del os.fork  # as without fork (Windows)\n"
SPEAK_TWICE = """import sys
import numpy as np
from imssa_hw.data.synth import synthesize
first, _ = synthesize("zero", "en-us+f3", seed=1)
again, _ = synthesize("zero", "en-us+f3", seed=1)
assert np.array_equal(first, again), "the same request gave other samples"
np.save(sys.argv[1], first)
"""


def test_without_fork_each_utterance_has_its_own_helper(tmp_path):
    """Where os.fork is missing the helper answers one request and exits, and the next request
    starts a new one: the same request gives the same samples, the very ones the forking
    helper of another process speaks (eSpeak NG's own generator is seeded per request)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NO_FORK)
    (tmp_path / "speak.py").write_text(SPEAK_TWICE)
    for name, env in (("fork", {}), ("nofork", {"PYTHONPATH": str(tmp_path / "site")})):
        done = subprocess.run([sys.executable, str(tmp_path / "speak.py"), str(tmp_path / name)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
    fork, nofork = np.load(tmp_path / "fork.npy"), np.load(tmp_path / "nofork.npy")
    assert len(fork) > 5000 and np.array_equal(fork, nofork)
