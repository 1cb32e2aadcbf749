"""Heidelberg Digits (HD) as released: `audio/*.flac` plus `train_filenames.txt` and
`test_filenames.txt`, names `lang-{english|german}_speaker-NN_trial-T_digit-D.flac`,
label = D (+ 10 for German)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from imssa_hw.errors import BadInput

LIST_FILES = {"train": "train_filenames.txt", "test": "test_filenames.txt"}
NAME = re.compile(r"lang-(english|german)_speaker-(\d+)_trial-(\d+)_digit-(\d)\.flac")


@dataclass(frozen=True)
class HdFile:
    """One recording of the list files."""

    path: Path
    language: str
    speaker: int
    trial: int
    digit: int

    @property
    def label(self) -> int:
        return self.digit + (10 if self.language == "german" else 0)


def check_root(data_root: str | Path | None) -> Path:
    """The data root as a Path, after checking it has audio/ and both list files."""
    if data_root is None:
        raise BadInput("dataset 'hd' needs a data root (the folder with audio/ and the list files)")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise BadInput(f"Heidelberg Digits root {root} does not exist or is not a folder")
    if not (root / "audio").is_dir():
        raise BadInput(f"Heidelberg Digits root {root} has no audio/ folder")
    for name in LIST_FILES.values():
        if not (root / name).is_file():
            raise BadInput(f"Heidelberg Digits list file {root / name} is missing")
    return root


def parse_name(name: str, where: str = "") -> tuple[str, int, int, int]:
    """(language, speaker, trial, digit) of an HD file name; BadInput naming `where` if malformed."""
    match = NAME.fullmatch(name)
    if match is None:
        raise BadInput(f"{where}malformed Heidelberg Digits file name {name!r} "
                       f"(expected lang-english|german_speaker-NN_trial-T_digit-D.flac)")
    language, speaker, trial, digit = match.groups()
    return language, int(speaker), int(trial), int(digit)


def read_list(root: Path, split: str) -> list[HdFile]:
    """The recordings named in a split's list file (blank lines skipped, '.flac' optional)."""
    list_path = root / LIST_FILES[split]
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read Heidelberg Digits list file {list_path}: {exc}") from None
    files = []
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            continue
        name = Path(name).name
        if not name.endswith(".flac"):
            name += ".flac"
        language, speaker, trial, digit = parse_name(name, f"{list_path}:{number}: ")
        files.append(HdFile(root / "audio" / name, language, speaker, trial, digit))
    if not files:
        raise BadInput(f"Heidelberg Digits list file {list_path} names no recordings")
    return files


def fingerprint(files: list[HdFile]) -> str:
    """Hash of the files' paths, sizes and modification times (a cache key part); BadInput if
    a listed file is missing."""
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.path.stat()
        except OSError:
            raise BadInput(f"Heidelberg Digits file {f.path} is listed but missing") from None
        h.update(f"{f.path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


SILENT_DBFS = -70.0
"""A clip whose loudest sample stays below this (dB full scale) holds no speech, only noise."""
SHORTEST_WORD_S = 0.1
"""No spoken word is shorter (the shortest of FSDD's 3,000 digits lasts 0.14 s)."""


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """(mono float32 audio, sample rate in Hz) of `path`; BadInput (one line naming the file)
    if it is missing or unreadable, silent, or shorter than a word."""
    if not path.is_file():
        raise BadInput(f"Heidelberg Digits file {path} is listed but missing")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, OSError, ...
        reason = " ".join(str(exc).split())
        raise BadInput(f"cannot read audio file {path}: {reason}") from None
    if audio.shape[0] == 0:
        raise BadInput(f"audio file {path} has no samples")
    if audio.shape[0] < SHORTEST_WORD_S * rate:
        raise BadInput(f"audio file {path} lasts {1e3 * audio.shape[0] / rate:.0f} ms: shorter "
                       f"than a spoken word ({1e3 * SHORTEST_WORD_S:.0f} ms at least)")
    mono = audio.mean(axis=1)
    peak = float(np.abs(mono).max())
    if peak < 10 ** (SILENT_DBFS / 20):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise BadInput(f"audio file {path} is silent (loudest sample {level}, below "
                       f"{SILENT_DBFS:g} dBFS): nothing to classify")
    return mono, int(rate)
