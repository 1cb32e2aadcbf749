"""load_task on synthetic data: shapes, normalization, determinism, classes, caching, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imssa_hw.data import TASKS, FeatureConfig, TaskData, load_task, synthetic
from imssa_hw.data.labels import confusion, worst_confusions
from imssa_hw.errors import BadInput

SMALL = {"n_train_per_class": 6, "n_test_per_class": 3}


@pytest.fixture(scope="module")
def zero_one(tmp_path_factory) -> TaskData:
    return load_task("zero-one", seed=0, cache_dir=tmp_path_factory.mktemp("cache"), **SMALL)


def test_shapes_dtypes_and_labels(zero_one):
    d = zero_one
    assert TASKS == ("zero-one", "digits", "hd20", "custom")
    assert d.x_train.shape == (12, 32, 32) and d.x_test.shape == (6, 32, 32)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.classes == [0, 1] and d.class_names == ["zero", "one"] and d.n_classes == 2
    assert np.bincount(d.y_train).tolist() == [6, 6] and np.bincount(d.y_test).tolist() == [3, 3]
    assert d.features == FeatureConfig()
    assert np.isfinite(d.x_train).all() and np.isfinite(d.x_test).all()


def test_train_split_is_normalized_per_feature(zero_one):
    flat = zero_one.x_train.reshape(-1, 32)
    assert np.allclose(flat.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(flat.std(axis=0), 1, atol=1e-3)
    assert len(zero_one.normalization["mean"]) == len(zero_one.normalization["std"]) == 32


def test_info_is_json_and_records_the_hold_out(zero_one):
    info = json.loads(json.dumps(zero_one.info))
    assert info["task"] == "zero-one" and info["seed"] == 0 and info["dataset"] == "synthetic"
    assert info["sizes"] == {"train": 12, "test": 6}
    train, held = info["voices_train"]["english"], info["voices_held_out"]["english"]
    assert train and held and not set(train) & set(held)
    assert info["generator_version"] == synthetic.GENERATOR_VERSION and info["espeak_version"]
    assert info["synth"]["snr_db"] == info["snr_db"]


def test_same_seed_same_arrays_other_seed_different(zero_one, tmp_path):
    again = load_task("zero-one", seed=0, cache_dir=tmp_path / "a", **SMALL)
    assert again.info["cache"]["status"] == "miss"
    assert np.array_equal(again.x_train, zero_one.x_train) and np.array_equal(again.y_test, zero_one.y_test)
    other = load_task("zero-one", seed=1, cache_dir=tmp_path / "b", **SMALL)
    assert not np.allclose(other.x_train, zero_one.x_train)


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    first = load_task("zero-one", seed=2, cache_dir=tmp_path, **SMALL)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    assert first.info["cache"] == {"path": str(files[0]), "status": "miss"}

    def no_generation(*args, **kwargs):
        raise AssertionError("generated although cached")
    monkeypatch.setattr(synthetic, "iter_samples", no_generation)
    calls = []
    second = load_task("zero-one", seed=2, cache_dir=tmp_path, progress=lambda *a: calls.append(a), **SMALL)
    assert second.info["cache"]["status"] == "hit" and calls == [(18, 18)]
    assert np.array_equal(second.x_train, first.x_train) and second.normalization == first.normalization
    with np.load(files[0], allow_pickle=False) as npz:  # stored without pickle
        assert set(npz.files) == {"x_train", "y_train", "x_test", "y_test", "speaker_train",
                                  "origin_train", "copy_train", "info"}


@pytest.mark.parametrize("damage", ["garbage", "truncate", "wrong_dtype"])
def test_a_corrupt_cache_is_regenerated(tmp_path, damage):
    first = load_task("zero-one", seed=3, cache_dir=tmp_path, **SMALL)
    path = tmp_path / first.info["cache"]["path"].rsplit("/", 1)[-1]
    if damage == "garbage":
        path.write_bytes(b"not a zip file")
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    else:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["y_train"] = arrays["y_train"].astype(np.float64)
        np.savez(path, **arrays)
    again = load_task("zero-one", seed=3, cache_dir=tmp_path, **SMALL)
    assert again.info["cache"]["status"] == "regenerated"
    assert np.array_equal(again.x_train, first.x_train)
    assert load_task("zero-one", seed=3, cache_dir=tmp_path, **SMALL).info["cache"]["status"] == "hit"


def test_cache_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "env-cache"))
    d = load_task("zero-one", seed=0, n_train_per_class=2, n_test_per_class=1)
    assert d.info["cache"]["path"].startswith(str(tmp_path / "env-cache" / "data"))


def test_class_subsets_and_german_labels(tmp_path):
    d = load_task("digits", classes=[7, 3], seed=0, cache_dir=tmp_path, n_train_per_class=2,
                  n_test_per_class=1)
    assert d.classes == [3, 7] and d.class_names == ["three", "seven"]
    assert set(d.y_train.tolist()) == {0, 1}
    hd20 = load_task("hd20", classes=[1, 15], seed=0, cache_dir=tmp_path, n_train_per_class=2,
                     n_test_per_class=1)
    assert hd20.class_names == ["one", "fuenf"]
    assert set(hd20.info["voices_held_out"]) == {"english", "german"}
    assert all(v.startswith("de+") for v in hd20.info["voices_train"]["german"])


def test_feature_config_is_used_and_keys_the_cache(tmp_path):
    cfg = FeatureConfig(n_mels=16, n_frames=40, hop_s=0.025)
    d = load_task("zero-one", seed=0, cache_dir=tmp_path, features=cfg, n_train_per_class=2,
                  n_test_per_class=1)
    assert d.x_train.shape == (4, 40, 16) and d.features == cfg
    assert d.info["features"] == cfg.to_dict()
    load_task("zero-one", seed=0, cache_dir=tmp_path, n_train_per_class=2, n_test_per_class=1)
    assert len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "three-four"}, "unknown task"),
    ({"dataset": "timit"}, "unknown dataset"),
    ({"classes": [0, 2]}, "not in task"),
    ({"classes": [1]}, "at least two"),
    ({"classes": [0, 0, 1]}, "distinct"),
    ({"classes": ["zero"]}, "integer"),
    ({"classes": "01"}, "string"),
    ({"n_train_per_class": 0}, "positive"),
    ({"seed": -1}, "seed"),
    ({"seed": None}, "seed"),
    ({"synth": {"snr_db": (0, 1)}}, "SynthSpec"),
    ({"features": {"n_mels": 8}}, "FeatureConfig"),
    ({"test_speakers": [3]}, "real recordings"),
    ({"mix_synthetic": 5}, "real recordings"),
    ({"dataset": "hd"}, "needs a data root"),
])
def test_bad_input_is_one_line(kwargs, match, tmp_path):
    args = {"task": "zero-one", "cache_dir": tmp_path, **kwargs}
    with pytest.raises(BadInput, match=match) as info:
        load_task(**args)
    assert "\n" not in str(info.value)


def test_confusion_counts_and_the_worst_confusions_by_name():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 2, 2, 1, 0, 2, 1, 1, 1])
    counts = confusion(labels, pred, 3)
    assert counts.tolist() == [[1, 0, 2], [1, 1, 0], [0, 3, 1]]
    worst = worst_confusions(counts, ["zero", "one", "two"], most=2)
    assert worst == [{"true": "two", "predicted": "one", "count": 3, "of": 4},
                     {"true": "zero", "predicted": "two", "count": 2, "of": 3}]
    assert worst_confusions(np.diag([3, 4]), ["zero", "one"]) == []  # nothing confused
