"""Audio in a folder per label (`--dataset folder`): the Speech Commands layout that torchaudio and
TensorFlow read. `ROOT/<label>/<any name>.wav|flac|ogg|aiff`, one folder per class (sorted by
name; folders starting with `_` or `.`, like Speech Commands' `_background_noise_`, are not
classes). The test split is the files `ROOT/testing_list.txt` names (`label/file.wav` per line,
as Speech Commands has it), or without that file a seeded fifth of every class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imssa_hw.errors import BadInput

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".aiff", ".aif"})
TEST_LIST = "testing_list.txt"
TEST_FRACTION = 0.2
NO_SPEAKER = -1
"""A folder's files name no speaker: validation is then a random part of the training files."""


@dataclass(frozen=True)
class LabelledFile:
    """One recording of a label folder: its path, class index and (unknown) speaker."""

    path: Path
    label: int
    speaker: int = NO_SPEAKER


def class_names(root: Path) -> list[str]:
    """The label folders of `root`, sorted; BadInput unless there are two or more."""
    if not root.is_dir():
        raise BadInput(f"data folder {root} does not exist or is not a folder")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] not in "_.")
    if len(names) < 2:
        raise BadInput(f"data folder {root} has {len(names)} label folder(s): a classifier "
                       "needs a folder per class, at least two")
    return names


def _test_names(root: Path) -> set[str] | None:
    path = root / TEST_LIST
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from None
    return {line.strip().replace("\\", "/") for line in lines if line.strip()}


def folder_splits(root: Path, seed: int) -> tuple[list[str], dict[str, list[LabelledFile]]]:
    """(class names, {"train": files, "test": files}) of a folder per label."""
    names = class_names(root)
    listed = _test_names(root)
    splits: dict[str, list[LabelledFile]] = {"train": [], "test": []}
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir()
                       if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise BadInput(f"label folder {root / name} holds no audio "
                           f"({', '.join(sorted(AUDIO_SUFFIXES))})")
        if listed is not None:
            test = [f"{name}/{p.name}" in listed for p in files]
        else:
            rng = np.random.default_rng([seed, 0xF01, label])
            chosen = set(rng.choice(len(files), max(1, round(TEST_FRACTION * len(files))),
                                    replace=False).tolist())
            test = [i in chosen for i in range(len(files))]
        for path, is_test in zip(files, test):
            splits["test" if is_test else "train"].append(LabelledFile(path, label))
    for split, files in splits.items():
        absent = sorted(set(range(len(names))) - {f.label for f in files})
        if absent:
            raise BadInput(f"data folder {root}: no {split} recordings of "
                           f"{', '.join(names[i] for i in absent)}")
    return names, splits
