"""Audio in a folder per label (`--dataset folder`, the Speech Commands layout): classes from the
folder names, the test split from testing_list.txt or a seeded fifth, any sample rate the
features take, and one line for a folder that cannot be used."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from imssa_hw.data import DataSpec, load_data
from imssa_hw.data.tasks import FSDD_ROOT
from imssa_hw.errors import BadInput


def label_folders(root: Path, per_class: int = 5) -> Path:
    """'yes' and 'no' folders of real recordings (FSDD's zeros and ones, renamed freely), one
    of them resampled to a 16 kHz WAV, and a `_background_noise_` folder that is no class."""
    for label, digit in (("no", 0), ("yes", 1)):
        (root / label).mkdir(parents=True)
        for trial in range(per_class):
            source = FSDD_ROOT / "audio" / f"lang-english_speaker-01_trial-{trial}_digit-{digit}.flac"
            shutil.copyfile(source, root / label / f"clip{trial}.flac")
    audio, rate = sf.read(root / "yes" / "clip0.flac")
    sf.write(root / "yes" / "clip0.wav", np.repeat(audio, 2), 2 * rate)
    (root / "yes" / "clip0.flac").unlink()
    (root / "_background_noise_").mkdir()
    return root


def spec(root: Path, **changes) -> DataSpec:
    return DataSpec(task="custom", dataset="folder", data_root=str(root), **changes)


def test_classes_are_the_folders_and_a_fifth_of_each_is_the_seeded_test_split(tmp_path):
    root = label_folders(tmp_path / "data")
    data = load_data(spec(root), cache_dir=tmp_path / "cache")
    assert data.class_names == ["no", "yes"] and data.classes == [0, 1]
    assert len(data.y_test) == 2 and sorted(data.y_test.tolist()) == [0, 1]
    assert len(data.y_train) == 8 and data.x_train.shape[1:] == (32, 32)
    again = load_data(spec(root), cache_dir=tmp_path / "cache")
    assert again.info["cache"]["status"] == "hit" and np.array_equal(again.x_test, data.x_test)


def test_testing_list_names_the_test_split(tmp_path):
    root = label_folders(tmp_path / "data")
    (root / "testing_list.txt").write_text("no/clip3.flac\nyes/clip0.wav\nyes/clip4.flac\n")
    data = load_data(spec(root), cache_dir=tmp_path / "cache")
    assert sorted(data.y_test.tolist()) == [0, 1, 1] and len(data.y_train) == 7


@pytest.mark.parametrize("damage, says", [
    (lambda root: shutil.rmtree(root / "no"), "1 label folder"),
    (lambda root: [p.unlink() for p in (root / "no").iterdir()], "holds no audio"),
    (lambda root: (root / "no" / "clip1.flac").write_bytes(b"junk"), "cannot read audio file"),
    (lambda root: (root / "testing_list.txt").write_text("yes/clip4.flac\n"),
     "no test recordings of no"),
])
def test_a_folder_that_cannot_be_used_is_refused_in_one_line(tmp_path, damage, says):
    root = label_folders(tmp_path / "data")
    damage(root)
    with pytest.raises(BadInput, match=says) as info:
        load_data(spec(root), cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)


def test_a_folder_spec_is_custom_and_needs_its_root():
    with pytest.raises(BadInput, match="needs a data root"):
        DataSpec(task="custom", dataset="folder")
    with pytest.raises(BadInput, match="do not go together"):
        DataSpec(task="digits", dataset="folder", data_root="/x")
