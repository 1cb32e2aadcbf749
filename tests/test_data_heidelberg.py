"""Heidelberg Digits loader on a tiny FLAC fixture in the HD layout, good and bad cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from imssa_hw.data import AugmentSpec, DataSpec, FeatureConfig, TaskData, load_data, load_task
from imssa_hw.data.heidelberg import parse_name
from imssa_hw.errors import BadInput

RATES = (8000, 16000, 48000)


def hd_name(language: str, speaker: int, trial: int, digit: int) -> str:
    return f"lang-{language}_speaker-{speaker:02d}_trial-{trial}_digit-{digit}.flac"


def make_hd(root: Path) -> dict[str, list[str]]:
    """English digits 0-2 and German 0-1 by speakers 1-3; speaker 3 only in the test list.
    Each clip is a tone whose pitch encodes the label, at one of several sample rates."""
    (root / "audio").mkdir(parents=True)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    k = 0
    for language, digits in (("english", (0, 1, 2)), ("german", (0, 1))):
        for digit in digits:
            label = digit + (10 if language == "german" else 0)
            for speaker in (1, 2, 3):
                for trial in (0, 1):
                    rate = RATES[k % len(RATES)]
                    k += 1
                    t = np.arange(int(0.6 * rate)) / rate
                    audio = 0.3 * np.sin(2 * np.pi * (300 + 100 * label) * t)
                    name = hd_name(language, speaker, trial, digit)
                    sf.write(root / "audio" / name, audio, rate, format="FLAC")
                    split = "test" if speaker == 3 or trial == 1 and speaker == 1 else "train"
                    lists[split].append(name)
    for split, names in lists.items():
        (root / f"{split}_filenames.txt").write_text("\n".join(names) + "\n")
    return lists


def raw(x: np.ndarray, data: TaskData) -> np.ndarray:
    """Features before the training split's normalization."""
    return x * np.asarray(data.normalization["std"]) + np.asarray(data.normalization["mean"])


@pytest.fixture()
def hd_root(tmp_path) -> Path:
    root = tmp_path / "hd"
    make_hd(root)
    return root


def test_digits_from_the_lists(hd_root, tmp_path):
    d = load_task("digits", dataset="hd", data_root=hd_root, cache_dir=tmp_path / "c")
    assert d.classes == [0, 1, 2] and d.class_names == ["zero", "one", "two"]
    assert len(d.y_train) == 9 and len(d.y_test) == 9  # 3 digits x (train 3 / test 3)
    assert d.x_train.shape[1:] == (32, 32) and d.x_train.dtype == np.float32
    assert d.info["speakers_test_only"] == [3] and d.info["speakers_train"] == [1, 2]
    # the tone's band follows the label whatever the file's sample rate
    peak = raw(d.x_train, d)[:, 8].argmax(axis=1)  # a frame inside the 0.6 s tone
    for c in range(3):
        assert len(set(peak[d.y_train == c].tolist())) == 1
    assert len(set(peak.tolist())) == 3


def test_hd20_labels_german_as_digit_plus_ten(hd_root, tmp_path):
    d = load_task("hd20", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    assert d.classes == [0, 1, 2, 10, 11]
    assert d.class_names == ["zero", "one", "two", "null", "eins"]
    zero_one = load_task("zero-one", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    assert zero_one.classes == [0, 1] and len(zero_one.y_train) == 6
    sub = load_task("hd20", dataset="hd", data_root=hd_root, classes=[1, 11], cache_dir=tmp_path)
    assert sub.class_names == ["one", "eins"] and len(sub.y_test) == 6


def test_classes_missing_from_the_files_are_bad_input(hd_root, tmp_path):
    with pytest.raises(BadInput, match="no recordings of classes 5, 6"):
        load_task("digits", dataset="hd", data_root=hd_root, classes=[5, 6], cache_dir=tmp_path)


def test_test_speakers_replace_the_lists(hd_root, tmp_path):
    d = load_task("digits", dataset="hd", data_root=hd_root, test_speakers=[2], cache_dir=tmp_path)
    assert d.info["speakers_test"] == [2] and d.info["speakers_train"] == [1, 3]
    assert len(d.y_test) == 6 and len(d.y_train) == 12  # 3 digits x 2 trials x 1 / 2 speakers
    assert sorted(set(d.speaker_train.tolist())) == [1, 3]
    with pytest.raises(BadInput, match=r"test speaker \[9\] not in .*speakers: 01, 02, 03"):
        load_task("digits", dataset="hd", data_root=hd_root, test_speakers=[9], cache_dir=tmp_path)
    with pytest.raises(BadInput, match="nothing left to train on"):
        load_task("digits", dataset="hd", data_root=hd_root, test_speakers=[1, 2, 3],
                  cache_dir=tmp_path)


def test_perturbed_copies_share_their_clip_and_stay_out_of_validation(hd_root, tmp_path):
    spec = AugmentSpec(copies=2)
    d = load_task("digits", dataset="hd", data_root=hd_root, augment=spec, seed=4,
                  cache_dir=tmp_path)
    assert len(d.y_train) == 9 * 3 and np.bincount(d.copy_train).tolist() == [9, 9, 9]
    for origin in range(9):
        rows = np.flatnonzero(d.origin_train == origin)
        assert len(rows) == 3 and len(set(d.y_train[rows].tolist())) == 1
        assert not np.allclose(d.x_train[rows[0]], d.x_train[rows[1]])  # a copy differs
    again = load_task("digits", dataset="hd", data_root=hd_root, augment=spec, seed=4,
                      cache_dir=tmp_path / "again")
    assert np.array_equal(again.x_train, d.x_train)  # copies are seeded
    plain = load_task("digits", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    assert np.allclose(raw(d.x_test, d), raw(plain.x_test, plain), atol=1e-4)  # never perturbed
    fit, val = d.validation_split(0.34, seed=0)
    assert len(val) == 3 and (d.copy_train[val] == 0).all()  # 2 speakers: clips, not speakers
    assert not set(d.origin_train[fit].tolist()) & set(d.origin_train[val].tolist())
    assert len(fit) + 3 * len(val) == len(d.y_train)


def test_german_synthetic_speech_mixes_into_hd20(hd_root, tmp_path):
    d = load_task("hd20", dataset="hd", data_root=hd_root, classes=[1, 11], mix_synthetic=2,
                  cache_dir=tmp_path)
    synthetic = d.speaker_train == -1
    assert synthetic.sum() == 4 and np.bincount(d.y_train[synthetic]).tolist() == [2, 2]
    assert d.info["voices_train"]["german"] and d.info["voices_train"]["english"]


def test_flite_voices_join_an_hd_folder_only_for_the_words_they_say(hd_root, tmp_path):
    spec = DataSpec(task="hd20", dataset="hd", data_root=str(hd_root), classes=(1, 11),
                    mix_flite=True)
    d = load_data(spec, cache_dir=tmp_path)
    flite = d.speaker_train == -1
    assert flite.sum() == 20 and d.info["flite_clips"] == 20  # four voices x five rates of "one"
    assert (d.y_train[flite] == d.classes.index(1)).all()  # no German words
    real = d.speaker_train >= 0
    assert set(d.speaker_train[real].tolist()) == {1, 2}  # the folder's own speakers as before


def test_validation_holds_out_whole_speakers_when_there_are_enough():
    speakers = np.repeat([0, 1, 2, 3, 4], 4)
    origin = np.arange(20)
    d = TaskData(np.zeros((20, 2, 1), np.float32), np.zeros(20, np.int64), np.zeros((0, 2, 1)),
                 np.zeros(0), [0, 1], ["zero", "one"], FeatureConfig(), {},
                 speaker_train=speakers, origin_train=origin, copy_train=np.zeros(20, np.int64))
    fit, val = d.validation_split(0.2, seed=1)
    assert len(set(speakers[val].tolist())) == 1 and len(val) == 4
    assert not set(speakers[fit].tolist()) & set(speakers[val].tolist())


def test_per_class_cap_is_seeded(hd_root, tmp_path):
    args = {"dataset": "hd", "data_root": hd_root, "n_train_per_class": 2, "seed": 0}
    a = load_task("digits", cache_dir=tmp_path, **args)
    b = load_task("digits", cache_dir=tmp_path / "b", **args)
    assert np.bincount(a.y_train).tolist() == [2, 2, 2] and len(a.y_test) == 9
    assert np.array_equal(a.x_train, b.x_train)


def test_cache_follows_the_files(hd_root, tmp_path):
    first = load_task("zero-one", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    second = load_task("zero-one", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    assert second.info["cache"]["status"] == "hit"
    name = hd_name("english", 1, 0, 0)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)
    sf.write(hd_root / "audio" / name, tone, 8000, format="FLAC")  # a changed recording
    again = load_task("zero-one", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    assert again.info["cache"]["status"] == "miss" and not np.array_equal(again.x_train, first.x_train)


def test_list_lines_may_omit_the_extension_and_have_blanks(hd_root, tmp_path):
    listing = hd_root / "train_filenames.txt"
    names = listing.read_text().split()
    listing.write_text("\n".join(n.removesuffix(".flac") for n in names) + "\n\n  \n")
    d = load_task("digits", dataset="hd", data_root=hd_root, cache_dir=tmp_path)
    assert len(d.y_train) == 9


def _expect(path_fragment: str, **kwargs):
    with pytest.raises(BadInput) as info:
        load_task("digits", dataset="hd", **kwargs)
    message = str(info.value)
    assert path_fragment in message and "\n" not in message
    return message


def test_missing_or_malformed_root(tmp_path, hd_root):
    _expect("data root", data_root=None, cache_dir=tmp_path)
    _expect(str(tmp_path / "nowhere"), data_root=tmp_path / "nowhere", cache_dir=tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    _expect("audio/", data_root=bare, cache_dir=tmp_path)
    (hd_root / "test_filenames.txt").unlink()
    _expect(str(hd_root / "test_filenames.txt"), data_root=hd_root, cache_dir=tmp_path)


def test_listed_file_missing(hd_root, tmp_path):
    missing = hd_root / "audio" / hd_name("english", 2, 0, 1)
    missing.unlink()
    assert "missing" in _expect(str(missing), data_root=hd_root, cache_dir=tmp_path)


def test_corrupt_flac(hd_root, tmp_path):
    broken = hd_root / "audio" / hd_name("english", 3, 0, 2)
    broken.write_bytes(b"fLaC but not really" * 10)
    assert "cannot read audio" in _expect(str(broken), data_root=hd_root, cache_dir=tmp_path)


@pytest.mark.parametrize("audio, rate, expected", [
    (np.zeros(4000), 8000, "is silent (loudest sample digital silence, below -70 dBFS)"),
    (1e-4 * np.ones(4000), 8000, "is silent (loudest sample -81 dBFS, below -70 dBFS)"),
    (0.1 * np.ones(400), 8000, "lasts 50 ms: shorter than a spoken word (100 ms at least)"),
    (0.1 * np.ones(4000), 6000, "is sampled at 6000 Hz, with nothing above 3000 Hz; these "
                                "features need up to 3800 Hz")])
def test_audio_that_cannot_be_used_is_named_in_one_line(hd_root, tmp_path, audio, rate, expected):
    clip = hd_root / "audio" / hd_name("english", 3, 0, 2)
    sf.write(clip, audio, rate, format="FLAC")
    assert expected in _expect(str(clip), data_root=hd_root, cache_dir=tmp_path)


def test_malformed_name_in_a_list(hd_root, tmp_path):
    listing = hd_root / "train_filenames.txt"
    listing.write_text(listing.read_text() + "speaker-01_digit-3.flac\n")
    message = _expect(str(listing), data_root=hd_root, cache_dir=tmp_path)
    assert "malformed" in message and "speaker-01_digit-3.flac" in message


def test_parse_name():
    assert parse_name("lang-german_speaker-07_trial-12_digit-9.flac") == ("german", 7, 12, 9)
    with pytest.raises(BadInput):
        parse_name("lang-french_speaker-07_trial-1_digit-9.flac")
