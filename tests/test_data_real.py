"""The shipped real recordings (FSDD, six speakers): present with their license, loaded by
speaker, mixed with synthetic speech; the recipe's defaults."""

from __future__ import annotations

import numpy as np
import pytest

from imssa_hw.data import AugmentSpec, DataSpec, FeatureConfig, TaskData, load_data, load_task
from imssa_hw.data.heidelberg import read_list
from imssa_hw.data.tasks import FLITE_ROOT, FSDD_ROOT, REAL_DEFAULTS
from imssa_hw.errors import BadInput


def test_the_recordings_ship_with_their_license():
    assert len(list((FSDD_ROOT / "audio").glob("*.flac"))) == 3000
    license_text = " ".join((FSDD_ROOT / "LICENSE").read_text().split())
    assert "CC BY-SA 4.0" in license_text and "Free Spoken Digit Dataset" in license_text
    train, test = read_list(FSDD_ROOT, "train"), read_list(FSDD_ROOT, "test")
    assert {f.speaker for f in train} == {0, 1, 2, 4, 5} and {f.speaker for f in test} == {3}
    assert len(train) == 2500 and len(test) == 500
    assert all(f.path.is_file() for f in train + test)


def test_the_flite_voices_ship_with_their_license():
    license_text = " ".join((FLITE_ROOT / "LICENSE").read_text().split())
    assert "Carnegie Mellon University" in license_text and "free of charge" in license_text
    voices = read_list(FLITE_ROOT, "train")
    assert len(voices) == 200 and {f.speaker for f in voices} == {10, 11, 12, 13}
    assert sorted({f.label for f in voices}) == list(range(10))
    assert all(f.path.is_file() for f in voices)


def test_default_data_is_real_speech_of_an_unseen_speaker(tmp_path):
    spec = DataSpec.default("zero-one")
    assert spec.dataset == "fsdd" and spec.augment == REAL_DEFAULTS["augment"]
    assert spec.mix_synthetic == REAL_DEFAULTS["mix_synthetic"] and spec.mix_flite
    assert DataSpec.default("hd20").dataset == "synthetic"  # FSDD has no German
    small = DataSpec.default("zero-one", n_train_per_class=3, n_test_per_class=2,
                             augment=AugmentSpec(copies=1), mix_synthetic=0)
    d = load_data(small, cache_dir=tmp_path)
    assert d.info["speakers_test"] == [3] and set(d.info["speakers_train"]) <= {0, 1, 2, 4, 5}
    # 3 real and (capped like them) 3 flite clips per class, each with one perturbed copy
    assert len(d.y_test) == 4 and len(d.y_train) == 12 * 2 and d.info["flite_clips"] == 6
    flite = d.speaker_train == -1
    assert flite.sum() == 12 and (d.copy_train[flite] == 1).sum() == 6
    assert np.bincount(d.y_train[flite]).tolist() == [6, 6]
    assert np.isfinite(d.x_train).all() and d.x_train.shape[1:] == (32, 32)


def test_a_held_out_speaker_and_mixed_synthetic_speech(tmp_path):
    d = load_task("zero-one", dataset="fsdd", test_speakers=[1], n_train_per_class=2,
                  n_test_per_class=2, mix_synthetic=3, seed=2, cache_dir=tmp_path)
    assert d.info["speakers_test"] == [1] and set(d.info["speakers_train"]) <= {0, 2, 3, 4, 5}
    real, synthetic = d.speaker_train >= 0, d.speaker_train == -1
    assert real.sum() == 4 and synthetic.sum() == 6  # 2 + 3 clips per class
    assert np.bincount(d.y_train[synthetic]).tolist() == [3, 3]
    assert len(set(d.origin_train.tolist())) == len(d.y_train)  # each its own clip
    assert d.info["voices_train"]["english"] and d.info["mix_synthetic"] == 3


def test_flite_voices_are_never_validation_speakers_and_not_for_synthetic_data():
    with pytest.raises(BadInput, match="apply to real recordings"):
        DataSpec(task="zero-one", dataset="synthetic", mix_flite=True)
    with pytest.raises(BadInput, match="mix_flite must be true or false"):
        DataSpec(mix_flite=1)
    # four real speakers and the flite voices (speaker -1): validation holds out real speakers only
    speaker = np.array([0, 1, 2, 3, -1, -1])
    d = TaskData(np.zeros((6, 1, 1), np.float32), np.zeros(6, np.int64), np.zeros((0, 1, 1)),
                 np.zeros(0, np.int64), [0, 1], ["zero", "one"], FeatureConfig(), {},
                 speaker_train=speaker, origin_train=np.arange(6), copy_train=np.zeros(6, np.int64))
    for seed in range(5):
        fit, val = d.validation_split(0.25, seed)
        assert len(val) == 1 and speaker[val[0]] >= 0 and {4, 5} <= set(fit.tolist())


def test_data_spec_round_trips_and_refuses_unknown_keys():
    spec = DataSpec.default("digits", seed=3, test_speakers=[2], classes=[4, 2],
                            features=FeatureConfig(n_mels=24))
    again = DataSpec.from_dict(spec.to_dict())
    assert again == spec and again.classes == (4, 2)
    with pytest.raises(BadInput, match=r"unknown key\(s\) in the data spec: colour"):
        DataSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(BadInput, match="older imssa-hw"):
        DataSpec.of_checkpoint({"data_args": {}})
