"""Tasks (zero-one, digits, hd20, and custom: a lab's own classes), their data sets (real
recordings, synthetic speech, sequences in an .npz, the shipped UCI digits), splits,
augmentation, feature caching and normalization.

`DataSpec` names everything that determines a task's data; checkpoints keep it, so inference
and fine-tuning load exactly the features a model was trained on. `load_data(spec)` returns a
ready `TaskData`; `load_task(...)` is the same with keyword arguments.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from imssa_hw.config import Config
from imssa_hw.data import cache, heidelberg, synthetic
from imssa_hw.data.arrays import UCI_DIGITS, read_sequences
from imssa_hw.data.folder import LabelledFile, folder_splits
from imssa_hw.data.features import (FeatureConfig, apply_normalization, check_source_rate,
                                     compute_features, fit_normalization)
from imssa_hw.data.labels import label_language, label_name
from imssa_hw.data.perturb import AugmentSpec, perturbed_features
from imssa_hw.data.synth import espeak_version
from imssa_hw.data.synthetic import SynthSpec
from imssa_hw.errors import BadInput

CUSTOM = "custom"
"""The task whose classes are those of its data: sequences in an .npz (`arrays`, the shipped
`uci-digits`) or audio in a folder per label (`folder`)."""
TASKS = ("zero-one", "digits", "hd20", CUSTOM)
SEQUENCE_DATASETS = ("arrays", "uci-digits")
"""Data sets of sequences already featurized, with their own classes (task CUSTOM)."""
CUSTOM_DATASETS = (*SEQUENCE_DATASETS, "folder")
"""Data sets with their own classes (task CUSTOM)."""
DATASETS = ("fsdd", "hd", "synthetic", *CUSTOM_DATASETS)
REAL_DATASETS = ("fsdd", "hd")
ROOTED_DATASETS = ("hd", "arrays", "folder")
"""Data sets read from a `data_root` the user gives."""
DATA_FORMAT = 2  # bump when the cached arrays change meaning
FSDD_ROOT = Path(__file__).resolve().parent / "fsdd"
"""Four speakers of the Free Spoken Digit Dataset in the HD layout, shipped with the package."""
FLITE_ROOT = Path(__file__).resolve().parent / "flite"
"""Four CMU Flite voices saying the English digits (HD layout, a train list only), shipped."""
SYNTHETIC_SPEAKER = -1
"""The speaker id of every synthetic voice (eSpeak and flite): never a validation speaker."""
SPEAKER_VALIDATION_MIN = 4
"""With this many training speakers or more, validation holds out whole speakers."""

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Task:
    """A task's label ids (HD convention), its synthetic difficulty and default synthetic sizes."""

    name: str
    labels: tuple[int, ...]
    synth: SynthSpec
    n_train_per_class: int
    n_test_per_class: int


# Difficulty calibrated in docs/data.md (bench/data_difficulty.py and a small S4D): zero-one
# about as hard as the paper's task (~95 %), digits/hd20 milder so a larger model reaches > 90 %.
ZERO_ONE_SYNTH = SynthSpec(snr_db=(7.0, 20.0), band_limit_prob=0.3, reverb_prob=0.3)
DIGITS_SYNTH = SynthSpec(snr_db=(10.0, 25.0), band_limit_prob=0.2, reverb_prob=0.2,
                         holdout_variants=3, holdout_accents=1)
TASK_DEFS: dict[str, Task] = {
    "zero-one": Task("zero-one", (0, 1), ZERO_ONE_SYNTH, 750, 250),
    "digits": Task("digits", tuple(range(10)), DIGITS_SYNTH, 300, 100),
    "hd20": Task("hd20", tuple(range(20)), DIGITS_SYNTH, 300, 100),
}
DEFAULT_DATASET = {"zero-one": "fsdd", "digits": "fsdd", "hd20": "synthetic",
                   CUSTOM: "uci-digits"}
"""Real speech where the shipped recordings have the classes; FSDD has no German. A custom
task's data by default is the shipped UCI digits."""
REAL_DEFAULTS = {"augment": AugmentSpec(), "mix_synthetic": 500, "mix_flite": True}
"""The recipe for real recordings (measured in docs/data.md): perturbed copies of every
training clip, synthetic clips of the same words by many eSpeak voices mixed in, and the
shipped flite voices as extra training speakers."""


def _integer(name: str, value: Any, minimum: int) -> int:
    ok = not isinstance(value, (bool, str, bytes))
    try:
        ok = ok and int(value) == value and value >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        kind = "positive" if minimum == 1 else "non-negative"
        raise BadInput(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


def _ids(name: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise BadInput(f"{name} must be a sequence of integers, got the string {value!r}")
    try:
        ids = tuple(_integer(name, v, 0) for v in value)
    except TypeError:
        raise BadInput(f"{name} must be a sequence of integers, got {value!r}") from None
    if not ids or len(set(ids)) != len(ids):
        raise BadInput(f"{name} must list distinct integers, got {value!r}")
    return ids


@dataclass(frozen=True)
class DataSpec(Config):
    """Everything that determines a task's data. `default(task, dataset)` gives the recipe."""

    WHAT: ClassVar[str] = "data spec"

    task: str = "zero-one"
    dataset: str = "fsdd"
    """fsdd: the shipped real recordings; hd: an HD-layout folder (`data_root`); synthetic;
    arrays: sequences in an .npz (`data_root`); uci-digits: the shipped UCI digits."""
    data_root: str | None = None
    classes: tuple[int, ...] | None = None
    """A subset of the task's label ids (None: all that the data has); of a custom task, the
    class indices of its data."""
    seed: int = 0
    n_train_per_class: int | None = None
    """Synthetic: clips per class (None: the task's); real: a seeded cap per class."""
    n_test_per_class: int | None = None
    test_speakers: tuple[int, ...] | None = None
    """Real data: these speakers form the test split, all others train (None: the list files)."""
    mix_synthetic: int = 0
    """Real data: synthetic clips per class (every eSpeak voice) added to the training split."""
    mix_flite: bool = False
    """Real data: the shipped flite voices (FLITE_ROOT) join the training split as speaker -1,
    like eSpeak voices (never a validation speaker), but perturbed like the real clips."""
    augment: AugmentSpec = AugmentSpec(copies=0)
    features: FeatureConfig = FeatureConfig()
    synth: SynthSpec | None = None
    """Synthetic difficulty (None: the task's)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BadInput(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if self.dataset not in DATASETS:
            raise BadInput(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        for name, kind in (("features", FeatureConfig), ("augment", AugmentSpec)):
            if not isinstance(getattr(self, name), kind):
                raise BadInput(f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        if self.synth is not None and not isinstance(self.synth, SynthSpec):
            raise BadInput(f"synth must be a SynthSpec, got {type(self.synth).__name__}")
        _integer("seed", self.seed, 0)
        _integer("mix_synthetic", self.mix_synthetic, 0)
        if not isinstance(self.mix_flite, bool):
            raise BadInput(f"mix_flite must be true or false, got {self.mix_flite!r}")
        for name in ("n_train_per_class", "n_test_per_class"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1)
        object.__setattr__(self, "classes", _ids("classes", self.classes))
        object.__setattr__(self, "test_speakers", _ids("test_speakers", self.test_speakers))
        if self.dataset == "synthetic" and (self.test_speakers or self.mix_synthetic
                                            or self.mix_flite):
            raise BadInput("test speakers, synthetic mixing and flite voices apply to real "
                           "recordings, not to --dataset synthetic")
        if (self.task == CUSTOM) != (self.dataset in CUSTOM_DATASETS):
            raise BadInput(f"task {self.task!r} and dataset {self.dataset!r} do not go together: "
                           f"the datasets {', '.join(CUSTOM_DATASETS)} bring their own classes "
                           f"(task {CUSTOM!r}), the others are speech of a speech task")
        if self.dataset in CUSTOM_DATASETS and (
                self.test_speakers or self.mix_synthetic or self.mix_flite or self.synth):
            raise BadInput("test speakers, synthetic mixing and flite voices apply to the "
                           f"speech tasks' data, not to --dataset {self.dataset}")
        if self.dataset in SEQUENCE_DATASETS and self.augment.copies:
            raise BadInput(f"perturbed copies are of audio, not of --dataset {self.dataset}")
        if self.dataset == "hd" and self.data_root is None:
            raise BadInput("dataset 'hd' needs a data root (the folder with audio/ and the list files)")
        if self.dataset == "arrays" and self.data_root is None:
            raise BadInput("dataset 'arrays' needs a data root (an .npz with x_train, y_train, "
                           "x_test, y_test)")
        if self.dataset == "folder" and self.data_root is None:
            raise BadInput("dataset 'folder' needs a data root (a folder per label of audio files)")
        if self.dataset not in ROOTED_DATASETS and self.data_root is not None:
            raise BadInput(f"a data root is for datasets {', '.join(ROOTED_DATASETS)}, "
                           f"not {self.dataset!r}")

    @classmethod
    def default(cls, task: str = "zero-one", dataset: str | None = None, **changes: Any) -> "DataSpec":
        """The recipe's data for `task`: real recordings are augmented and mixed with
        synthetic speech (REAL_DEFAULTS); `changes` override any field."""
        dataset = DEFAULT_DATASET.get(task, "synthetic") if dataset is None else dataset
        recipe = REAL_DEFAULTS if dataset in REAL_DATASETS else {}
        return cls(task=task, dataset=dataset, **{**recipe, **changes})

    @property
    def root(self) -> Path | None:
        """The HD-layout folder of real data (the shipped one for fsdd), or the .npz of
        sequences (the shipped one for uci-digits)."""
        if self.dataset == "fsdd":
            return FSDD_ROOT
        if self.dataset == "uci-digits":
            return UCI_DIGITS
        return None if self.data_root is None else Path(self.data_root).expanduser()

    @classmethod
    def of_checkpoint(cls, meta: dict[str, Any]) -> "DataSpec":
        """The data a checkpoint's model was trained on (from its metadata)."""
        if "data_spec" not in meta:
            raise BadInput("the checkpoint does not say which data it was trained on (written "
                           "by an older imssa-hw? train it again)")
        return cls.from_dict(meta["data_spec"])

    @classmethod
    def from_dict(cls, d: Any) -> "DataSpec":
        """`Config.from_dict`; an empty or null augment or features takes the default."""
        if isinstance(d, dict):
            d = {k: v for k, v in d.items() if not (k in ("augment", "features") and not v)}
        return super().from_dict(d)


@dataclass
class TaskData:
    """Features of both splits, normalized with the training split's per-feature mean/std.

    Every training sample knows its speaker (-1 for synthetic voices), the clip it comes from
    (`origin_train`, shared by a clip's perturbed copies) and which copy it is (0: the clip).
    """

    x_train: np.ndarray  # float32 (n, L, F)
    y_train: np.ndarray  # int64 (n,), class index 0..C-1
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[int]  # label id (HD convention) of class 0..C-1
    class_names: list[str]
    features: FeatureConfig | None
    """How the audio became features; None for sequences that came featurized."""
    normalization: dict[str, list[float]]
    speaker_train: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    origin_train: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    copy_train: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def validation_split(self, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(fit, validation) indices of the training split. With SPEAKER_VALIDATION_MIN real
        speakers or more, validation is whole held-out speakers (about `fraction` of them);
        else a random `fraction` of the clips. Validation holds the clips themselves, never
        their perturbed copies; fit holds nothing of a validation clip."""
        rng = np.random.default_rng([seed, 0x7A1])
        speakers = np.unique(self.speaker_train[self.speaker_train >= 0])
        origins = np.unique(self.origin_train)
        if len(speakers) >= SPEAKER_VALIDATION_MIN:
            k = max(1, int(round(fraction * len(speakers))))
            held = rng.choice(speakers, k, replace=False)
            val_origins = np.unique(self.origin_train[np.isin(self.speaker_train, held)])
        else:
            k = int(round(fraction * len(origins)))
            val_origins = rng.choice(origins, k, replace=False)
        in_val = np.isin(self.origin_train, val_origins)
        return np.flatnonzero(~in_val), np.flatnonzero(in_val & (self.copy_train == 0))


@dataclass(frozen=True)
class Clip:
    """One recording to featurize: samples, rate, label id, speaker (-1: synthetic voice)."""

    audio: np.ndarray
    rate_hz: int
    label: int
    speaker: int


def _select_labels(task: Task, classes: Sequence[int] | None) -> list[int]:
    if classes is None:
        return list(task.labels)
    outside = [c for c in classes if c not in task.labels]
    if outside:
        raise BadInput(f"classes {outside} are not in task {task.name!r} "
                       f"(labels {task.labels[0]}..{task.labels[-1]})")
    if len(classes) < 2:
        raise BadInput(f"classes {list(classes)}: a classifier needs at least two")
    return sorted(classes)


def _ticker(total: int, progress: Progress | None) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
    return tick


def _featurize(clips: Iterable[Clip], n: int, features: FeatureConfig, augment: AugmentSpec | None,
               seed: int, split_code: int, tick: Callable[[], None]) -> dict[str, np.ndarray]:
    """Features of `n` clips, each followed by `augment.copies` perturbed copies of it (copy k
    of clip i is a pure function of (seed, split_code, i, k)), with every row's label,
    speaker, clip index (origin) and copy number."""
    copies = augment.copies if augment is not None else 0
    total = n * (1 + copies)
    x = np.empty((total, features.n_frames, features.n_features), np.float32)
    ids = {name: np.empty(total, np.int64) for name in ("y", "speaker", "origin", "copy")}
    row = 0
    for i, clip in enumerate(clips):
        for k in range(1 + copies):
            if k == 0:
                x[row] = compute_features(clip.audio, clip.rate_hz, features)
            else:
                rng = np.random.default_rng([seed, 0xA06, split_code, i, k])
                x[row] = perturbed_features(clip.audio, clip.rate_hz, features, augment, rng)
            for name, value in (("y", clip.label), ("speaker", clip.speaker), ("origin", i),
                                ("copy", k)):
                ids[name][row] = value
            row += 1
            tick()
    return {"x": x, **ids}


def _synthetic_clips(labels: list[int], spec: SynthSpec, seed: int, split: str,
                     n_per_class: int) -> Iterator[Clip]:
    for clip, label, _ in synthetic.iter_samples(labels, split, n_per_class, spec, seed):
        yield Clip(clip, synthetic.SAMPLE_RATE_HZ, label, SYNTHETIC_SPEAKER)


def _synthetic_info(labels: list[int], spec: SynthSpec, seed: int) -> dict[str, Any]:
    languages = sorted({label_language(lab) for lab in labels})
    voices = {lang: synthetic.voice_split(lang, spec, seed) for lang in languages}
    return {
        "generator_version": synthetic.GENERATOR_VERSION,
        "espeak_version": espeak_version(),
        "synth": spec.to_dict(),
        "snr_db": list(spec.snr_db),
        "voices_train": {lang: v[0] for lang, v in voices.items()},
        "voices_held_out": {lang: v[1] for lang, v in voices.items()},
    }


def _speaker_split(root: Path, test_speakers: tuple[int, ...]) -> dict[str, list[heidelberg.HdFile]]:
    """Both list files' recordings, split by speaker: `test_speakers` test, the others train."""
    every = [f for split in ("train", "test") for f in heidelberg.read_list(root, split)]
    present = sorted({f.speaker for f in every})
    absent = [s for s in test_speakers if s not in present]
    if absent:
        raise BadInput(f"test speaker{'s' if len(absent) > 1 else ''} {absent} not in {root} "
                       f"(speakers: {', '.join(f'{s:02d}' for s in present)})")
    split = {"train": [f for f in every if f.speaker not in test_speakers],
             "test": [f for f in every if f.speaker in test_speakers]}
    if not split["train"]:
        raise BadInput(f"every speaker of {root} is a test speaker: nothing left to train on")
    return split


def _hd_files(root: Path, labels: list[int], explicit: bool, seed: int,
              sizes: dict[str, int | None], test_speakers: tuple[int, ...] | None
              ) -> tuple[list[int], dict[str, list[heidelberg.HdFile]]]:
    """(labels, each split's recordings of them, at most sizes[split] per class by a seeded
    choice). Without `explicit` classes, the task's labels that the training split has."""
    if test_speakers:
        listed = _speaker_split(root, test_speakers)
        where = {"train": f"the other speakers of {root}",
                 "test": f"speakers {list(test_speakers)} of {root}"}
    else:
        listed = {split: heidelberg.read_list(root, split) for split in sizes}
        where = {split: str(root / heidelberg.LIST_FILES[split]) for split in sizes}
    if not explicit:
        present = {f.label for f in listed["train"]}
        labels = [lab for lab in labels if lab in present]
        if len(labels) < 2:
            raise BadInput(f"{where['train']} has fewer than two classes of this task")
    chosen = {}
    for code, (split, n) in enumerate(sizes.items(), 1):
        files = [f for f in listed[split] if f.label in labels]
        absent = sorted(set(labels) - {f.label for f in files})
        if absent:
            raise BadInput(f"{where[split]}: no recordings of "
                           f"class{'es' if len(absent) > 1 else ''} {', '.join(map(str, absent))}")
        chosen[split] = _at_most(files, labels, n, [seed, code])
    return labels, chosen


def _at_most(files: list[Any], labels: list[int], n: int | None, key: list[int]) -> list[Any]:
    """`files`, keeping at most `n` per label (None: all) by a choice seeded with `key`."""
    if n is None:
        return files
    keep = []
    for label in labels:
        idx = [i for i, f in enumerate(files) if f.label == label]
        rng = np.random.default_rng([*key, label])
        keep += idx if len(idx) <= n else rng.choice(idx, n, replace=False).tolist()
    return [files[i] for i in sorted(keep)]


def _recordings(files: Sequence[heidelberg.HdFile | LabelledFile], features: FeatureConfig,
                speaker: int | None = None) -> Iterator[Clip]:
    """The files' clips, each with its own speaker id or `speaker` if given; BadInput naming a
    file the `features` cannot use (silent, too short, sampled too low)."""
    for f in files:
        audio, rate = heidelberg.load_audio(f.path)
        check_source_rate(rate, features, f"audio file {f.path}")
        yield Clip(audio, rate, f.label, f.speaker if speaker is None else speaker)


def _flite_files(labels: list[int], n_per_class: int | None, seed: int) -> list[heidelberg.HdFile]:
    """The shipped flite clips of `labels` (none for labels they do not say, e.g. German), at
    most `n_per_class` of each by a seeded choice."""
    files = [f for f in heidelberg.read_list(FLITE_ROOT, "train") if f.label in labels]
    return _at_most(files, labels, n_per_class, [seed, 4])


def _build(spec: DataSpec, labels: list[int], files: dict[str, list[heidelberg.HdFile]] | None,
           voices: list[heidelberg.HdFile], progress: Progress | None) -> tuple[dict, dict]:
    """Featurize the test split, the training split (the recordings, then the flite `voices` as
    speaker -1) with its perturbed copies, and the mixed-in eSpeak clips; returns (arrays, info)."""
    task = TASK_DEFS.get(spec.task)  # None: a custom task (a folder per label)
    synth = spec.synth if spec.synth is not None or task is None else task.synth
    copies = spec.augment.copies
    if files is None:  # synthetic
        sizes = {"train": spec.n_train_per_class or task.n_train_per_class,
                 "test": spec.n_test_per_class or task.n_test_per_class}
        sources = {split: (_synthetic_clips(labels, synth, spec.seed, split, n), n * len(labels))
                   for split, n in sizes.items()}
        mixed = 0
    else:
        sources = {"test": (_recordings(files["test"], spec.features), len(files["test"])),
                   "train": (itertools.chain(_recordings(files["train"], spec.features),
                                             _recordings(voices, spec.features,
                                                         SYNTHETIC_SPEAKER)),
                             len(files["train"]) + len(voices))}
        mixed = spec.mix_synthetic * len(labels)
    total = sources["test"][1] + sources["train"][1] * (1 + copies) + mixed
    tick = _ticker(total, progress)
    test = _featurize(*sources["test"], spec.features, None, spec.seed, 2, tick)
    train = _featurize(*sources["train"], spec.features, spec.augment, spec.seed, 1, tick)
    if mixed:  # every eSpeak voice: nothing of the synthetic split is held out for testing
        synth = dataclasses.replace(synth, holdout_variants=0, holdout_accents=0)
        extra = _featurize(_synthetic_clips(labels, synth, spec.seed, "train", spec.mix_synthetic),
                           mixed, spec.features, None, spec.seed, 3, tick)
        extra["origin"] += int(train["origin"].max()) + 1
        train = {name: np.concatenate([train[name], extra[name]]) for name in train}
    arrays = {"x_train": train["x"], "y_train": train["y"], "speaker_train": train["speaker"],
              "origin_train": train["origin"], "copy_train": train["copy"],
              "x_test": test["x"], "y_test": test["y"]}
    info: dict[str, Any] = {"augment": spec.augment.to_dict(), "mix_synthetic": spec.mix_synthetic,
                            "flite_clips": len(voices)}
    if files is None or mixed:
        info.update(_synthetic_info(labels, synth, spec.seed))
    if files is not None:
        speakers = {split: sorted({f.speaker for f in fs}) for split, fs in files.items()}
        info.update({
            "data_root": str(spec.root.resolve()),
            "speakers_train": speakers["train"],
            "speakers_test": speakers["test"],
            "speakers_test_only": sorted(set(speakers["test"]) - set(speakers["train"])),
        })
    return arrays, info


def load_data(spec: DataSpec, cache_dir: str | Path | None = None,
              progress: Progress | None = None) -> TaskData:
    """Load (from the cache, else generate or read) the normalized train/test features of
    `spec`. progress(done, total) is called per clip. Raises BadInput for anything unusable."""
    if spec.dataset in SEQUENCE_DATASETS:
        return _sequence_data(spec, progress)
    voices: list[heidelberg.HdFile] = []
    name_of = label_name
    settings: dict[str, Any] = {"data_format": DATA_FORMAT, **spec.to_dict()}
    if spec.dataset == "folder":
        names, listed = folder_splits(spec.root, spec.seed)
        labels = _chosen_classes(spec.classes, names, spec.root)
        files = {split: _at_most([f for f in listed[split] if f.label in labels], labels, n,
                                 [spec.seed, code])
                 for code, (split, n) in enumerate((("train", spec.n_train_per_class),
                                                    ("test", spec.n_test_per_class)), 1)}
        settings.update(classes=labels, names=names, root=str(spec.root.resolve()),
                        files={s: heidelberg.fingerprint(f) for s, f in files.items()})
        name_of = names.__getitem__
    elif spec.dataset == "synthetic":
        labels = _select_labels(TASK_DEFS[spec.task], spec.classes)
        files = None
        settings.update(classes=labels, generator_version=synthetic.GENERATOR_VERSION)
    else:
        root = heidelberg.check_root(spec.root)
        labels, files = _hd_files(root, _select_labels(TASK_DEFS[spec.task], spec.classes),
                                  spec.classes is not None, spec.seed,
                                  {"train": spec.n_train_per_class, "test": spec.n_test_per_class},
                                  spec.test_speakers)
        settings.update(classes=labels, root=str(root.resolve()),
                        files={s: heidelberg.fingerprint(f) for s, f in files.items()},
                        generator_version=synthetic.GENERATOR_VERSION if spec.mix_synthetic else None)
        if spec.mix_flite:
            voices = _flite_files(labels, spec.n_train_per_class, spec.seed)
            settings["flite_files"] = heidelberg.fingerprint(voices) if voices else None

    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
    path = folder / f"{spec.task}-{spec.dataset}-{cache.cache_key(settings)}.npz"
    existed = path.exists()
    stored = cache.load(path)
    if stored is not None and not set(np.unique(np.concatenate(
            [stored["y_train"], stored["y_test"]])).tolist()) <= set(labels):
        stored = None
    if stored is not None:
        status = "hit"
        total = len(stored["y_train"]) + len(stored["y_test"])
        if progress is not None:
            progress(total, total)
    else:
        status = "regenerated" if existed else "miss"
        start = time.perf_counter()
        arrays, extra = _build(spec, labels, files, voices, progress)
        info = {"task": spec.task, "dataset": spec.dataset, "seed": spec.seed, "classes": labels,
                "class_names": [name_of(lab) for lab in labels],
                "features": spec.features.to_dict(),
                "sizes": {"train": len(arrays["y_train"]), "test": len(arrays["y_test"])},
                **extra, "build_seconds": round(time.perf_counter() - start, 3)}
        cache.save(path, arrays, info)
        stored = {**arrays, "info": info}

    normalization = fit_normalization(stored["x_train"])
    index = np.asarray(labels)
    info = dict(stored["info"], cache={"path": str(path), "status": status})
    return TaskData(
        x_train=apply_normalization(stored["x_train"], normalization),
        y_train=np.searchsorted(index, stored["y_train"]).astype(np.int64),
        x_test=apply_normalization(stored["x_test"], normalization),
        y_test=np.searchsorted(index, stored["y_test"]).astype(np.int64),
        classes=labels, class_names=[name_of(lab) for lab in labels], features=spec.features,
        normalization=normalization, speaker_train=stored["speaker_train"],
        origin_train=stored["origin_train"], copy_train=stored["copy_train"], info=info)


def _chosen_classes(classes: Sequence[int] | None, names: list[str], where: Path) -> list[int]:
    """The class indices of a custom task's data that `classes` keeps (None: all)."""
    if classes is None:
        return list(range(len(names)))
    outside = [c for c in classes if c >= len(names)]
    if outside:
        raise BadInput(f"classes {outside} are not in {where} (class indices 0..{len(names) - 1})")
    if len(classes) < 2:
        raise BadInput(f"classes {list(classes)}: a classifier needs at least two")
    return sorted(classes)


def _sequence_data(spec: DataSpec, progress: Progress | None) -> TaskData:
    """The sequences of an .npz (`spec.root`), its classes or `spec.classes` of them, at most
    `n_*_per_class` per class by a seeded choice, normalized with the training split's
    per-feature mean/std. No cache: reading the file is as fast as reading one."""
    seqs = read_sequences(spec.root)
    names = seqs.class_names
    labels = _chosen_classes(spec.classes, names, spec.root)
    splits = {}
    for code, (split, n) in enumerate((("train", spec.n_train_per_class),
                                       ("test", spec.n_test_per_class)), 1):
        x, y = getattr(seqs, f"x_{split}"), getattr(seqs, f"y_{split}")
        keep = []
        for label in labels:
            idx = np.flatnonzero(y == label)
            rng = np.random.default_rng([spec.seed, code, label])
            keep += idx.tolist() if n is None or len(idx) <= n else rng.choice(idx, n, False).tolist()
        keep = np.sort(np.asarray(keep, np.int64))
        splits[split] = (x[keep], np.searchsorted(np.asarray(labels), y[keep]).astype(np.int64))
    if progress is not None:
        progress(1, 1)
    x_train, y_train = splits["train"]
    x_test, y_test = splits["test"]
    normalization = fit_normalization(x_train)
    n = len(y_train)
    info = {"task": spec.task, "dataset": spec.dataset, "seed": spec.seed, "classes": labels,
            "class_names": [names[i] for i in labels], "data_root": str(spec.root.resolve()),
            "steps": int(x_train.shape[1]), "width": int(x_train.shape[2]),
            "sizes": {"train": n, "test": len(y_test)}}
    return TaskData(
        x_train=apply_normalization(x_train, normalization), y_train=y_train,
        x_test=apply_normalization(x_test, normalization), y_test=y_test, classes=labels,
        class_names=[names[i] for i in labels], features=None,
        normalization=normalization, speaker_train=np.full(n, SYNTHETIC_SPEAKER, np.int64),
        origin_train=np.arange(n, dtype=np.int64), copy_train=np.zeros(n, np.int64), info=info)


def load_task(task: str, dataset: str = "synthetic", data_root: str | Path | None = None,
              classes: Sequence[int] | None = None, seed: int = 0,
              features: FeatureConfig | None = None, n_train_per_class: int | None = None,
              n_test_per_class: int | None = None, cache_dir: str | Path | None = None,
              progress: Progress | None = None, synth: SynthSpec | None = None,
              test_speakers: Sequence[int] | None = None, mix_synthetic: int = 0,
              augment: AugmentSpec | None = None) -> TaskData:
    """`load_data` with the DataSpec's fields as keyword arguments (no recipe defaults: see
    `DataSpec.default`)."""
    spec = DataSpec(task=task, dataset=dataset,
                    data_root=None if data_root is None else str(data_root), classes=classes,
                    seed=seed, n_train_per_class=n_train_per_class,
                    n_test_per_class=n_test_per_class, test_speakers=test_speakers,
                    mix_synthetic=mix_synthetic,
                    augment=AugmentSpec(copies=0) if augment is None else augment,
                    features=FeatureConfig() if features is None else features, synth=synth)
    return load_data(spec, cache_dir, progress)
