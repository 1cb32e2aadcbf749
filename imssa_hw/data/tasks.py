"""Tasks (zero-one, digits, hd20), their data sets (synthetic or Heidelberg Digits), splits,
feature caching and normalization: `load_task` returns a ready `TaskData`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from imssa_hw.data import cache, heidelberg, synthetic
from imssa_hw.data.features import FeatureConfig, apply_normalization, compute_features, fit_normalization
from imssa_hw.data.labels import label_language, label_name
from imssa_hw.data.synth import espeak_version
from imssa_hw.data.synthetic import SynthSpec
from imssa_hw.errors import BadInput

TASKS = ("zero-one", "digits", "hd20")
DATASETS = ("synthetic", "hd")
DATA_FORMAT = 1  # bump when the cached arrays change meaning

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


@dataclass
class TaskData:
    """Features of both splits, normalized with the training split's per-feature mean/std."""

    x_train: np.ndarray  # float32 (n, L, F)
    y_train: np.ndarray  # int64 (n,), class index 0..C-1
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[int]  # label id (HD convention) of class 0..C-1
    class_names: list[str]
    features: FeatureConfig
    normalization: dict[str, list[float]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _select_labels(task: Task, classes: Sequence[int] | None) -> list[int]:
    if classes is None:
        return list(task.labels)
    if isinstance(classes, (str, bytes)):
        raise BadInput(f"classes must be a sequence of label ids, got the string {classes!r}")
    try:
        chosen = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise BadInput(f"classes must be integer label ids, got {classes!r}") from None
    outside = [c for c in chosen if c not in task.labels]
    if outside:
        raise BadInput(f"classes {outside} are not in task {task.name!r} "
                       f"(labels {task.labels[0]}..{task.labels[-1]})")
    if len(set(chosen)) != len(chosen):
        raise BadInput(f"classes {chosen} repeat a label")
    if len(chosen) < 2:
        raise BadInput(f"classes {chosen}: a classifier needs at least two")
    return sorted(chosen)


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


def _count(name: str, value: int | None) -> int | None:
    return None if value is None else _integer(name, value, 1)


def _fill(items: Iterable[tuple[np.ndarray, int, int]], n: int, features: FeatureConfig,
          tick: Callable[[], None]) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of `n` (audio, sample rate, label) items."""
    x = np.empty((n, features.n_frames, features.n_features), np.float32)
    y = np.empty(n, np.int64)
    for k, (audio, rate, label) in enumerate(items):
        x[k] = compute_features(audio, rate, features)
        y[k] = label
        tick()
    return x, y


def _ticker(total: int, progress: Progress | None) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
    return tick


def _build_synthetic(labels: list[int], spec: SynthSpec, features: FeatureConfig, seed: int,
                     sizes: dict[str, int], progress: Progress | None) -> tuple[dict, dict]:
    tick = _ticker(len(labels) * sum(sizes.values()), progress)
    arrays: dict[str, np.ndarray] = {}
    for split, n in sizes.items():
        samples = synthetic.iter_samples(labels, split, n, spec, seed)
        items = ((clip, synthetic.SAMPLE_RATE_HZ, label) for clip, label, _ in samples)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = _fill(items, n * len(labels), features, tick)
    languages = sorted({label_language(lab) for lab in labels})
    voices = {lang: synthetic.voice_split(lang, spec, seed) for lang in languages}
    info = {
        "generator_version": synthetic.GENERATOR_VERSION,
        "espeak_version": espeak_version(),
        "synth": spec.to_dict(),
        "snr_db": list(spec.snr_db),
        "voices_train": {lang: v[0] for lang, v in voices.items()},
        "voices_held_out": {lang: v[1] for lang, v in voices.items()},
    }
    return arrays, info


def _hd_files(root: Path, labels: list[int], explicit: bool, seed: int,
              sizes: dict[str, int | None]) -> tuple[list[int], dict[str, list[heidelberg.HdFile]]]:
    """(labels, each split's recordings of them, at most sizes[split] per class by a seeded
    choice). Without `explicit` classes, the task's labels that the training list has."""
    listed = {split: heidelberg.read_list(root, split) for split in sizes}
    if not explicit:
        present = {f.label for f in listed["train"]}
        labels = [lab for lab in labels if lab in present]
        if len(labels) < 2:
            raise BadInput(f"{root / heidelberg.LIST_FILES['train']} lists fewer than two classes "
                           f"of this task")
    chosen = {}
    for code, (split, n) in enumerate(sizes.items(), 1):
        files = [f for f in listed[split] if f.label in labels]
        absent = sorted(set(labels) - {f.label for f in files})
        if absent:
            raise BadInput(f"{root / heidelberg.LIST_FILES[split]} lists no recordings of "
                           f"class{'es' if len(absent) > 1 else ''} {', '.join(map(str, absent))}")
        if n is not None:
            keep = []
            for label in labels:
                idx = [i for i, f in enumerate(files) if f.label == label]
                rng = np.random.default_rng([seed, code, label])
                keep += idx if len(idx) <= n else rng.choice(idx, n, replace=False).tolist()
            files = [files[i] for i in sorted(keep)]
        chosen[split] = files
    return labels, chosen


def _build_hd(root: Path, files: dict[str, list[heidelberg.HdFile]], features: FeatureConfig,
              progress: Progress | None) -> tuple[dict, dict]:
    tick = _ticker(sum(len(f) for f in files.values()), progress)
    arrays: dict[str, np.ndarray] = {}

    def items(split_files: list[heidelberg.HdFile]) -> Iterator[tuple[np.ndarray, int, int]]:
        for f in split_files:
            audio, rate = heidelberg.load_audio(f.path)
            yield audio, rate, f.label

    for split, split_files in files.items():
        arrays[f"x_{split}"], arrays[f"y_{split}"] = _fill(items(split_files), len(split_files),
                                                           features, tick)
    speakers = {split: sorted({f.speaker for f in fs}) for split, fs in files.items()}
    info = {
        "data_root": str(root.resolve()),
        "speakers_train": speakers["train"],
        "speakers_test": speakers["test"],
        "speakers_test_only": sorted(set(speakers["test"]) - set(speakers["train"])),
    }
    return arrays, info


def load_task(task: str, dataset: str = "synthetic", data_root: str | Path | None = None,
              classes: Sequence[int] | None = None, seed: int = 0,
              features: FeatureConfig | None = None, n_train_per_class: int | None = None,
              n_test_per_class: int | None = None, cache_dir: str | Path | None = None,
              progress: Progress | None = None, synth: SynthSpec | None = None) -> TaskData:
    """Load (from the cache, else generate or read) a task's normalized train/test features.

    task: one of TASKS. dataset "synthetic" (eSpeak NG, offline) or "hd" (Heidelberg Digits
    files under `data_root`). classes: a subset of the task's label ids. n_*_per_class: synthetic
    sizes (default: the task's), or a seeded cap per class for "hd" (default: all). synth:
    overrides the task's synthetic difficulty. progress(done, total) is called per clip.
    Raises BadInput for anything unusable.
    """
    if task not in TASK_DEFS:
        raise BadInput(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if dataset not in DATASETS:
        raise BadInput(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    task_def = TASK_DEFS[task]
    labels = _select_labels(task_def, classes)
    features = FeatureConfig() if features is None else features
    if not isinstance(features, FeatureConfig):
        raise BadInput(f"features must be a FeatureConfig, got {type(features).__name__}")
    seed = _integer("seed", seed, 0)
    if synth is not None and not isinstance(synth, SynthSpec):
        raise BadInput(f"synth must be a SynthSpec, got {type(synth).__name__}")
    n_train = _count("n_train_per_class", n_train_per_class)
    n_test = _count("n_test_per_class", n_test_per_class)
    settings: dict[str, Any] = {"data_format": DATA_FORMAT, "task": task, "dataset": dataset,
                                "classes": labels, "seed": seed, "features": features.to_dict()}
    if dataset == "synthetic":
        spec = task_def.synth if synth is None else synth
        sizes = {"train": n_train or task_def.n_train_per_class, "test": n_test or task_def.n_test_per_class}
        settings.update(generator_version=synthetic.GENERATOR_VERSION, synth=spec.to_dict(),
                        n_per_class=sizes)

        def build() -> tuple[dict, dict]:
            return _build_synthetic(labels, spec, features, seed, sizes, progress)
    else:
        root = heidelberg.check_root(data_root)
        labels, files = _hd_files(root, labels, classes is not None, seed,
                                  {"train": n_train, "test": n_test})
        settings.update(classes=labels, root=str(root.resolve()), n_per_class=[n_train, n_test],
                        files={s: heidelberg.fingerprint(f) for s, f in files.items()})

        def build() -> tuple[dict, dict]:
            return _build_hd(root, files, features, progress)

    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
    path = folder / f"{task}-{dataset}-{cache.cache_key(settings)}.npz"
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
        arrays, extra = build()
        info = {"task": task, "dataset": dataset, "seed": seed, "classes": labels,
                "class_names": [label_name(lab) for lab in labels],
                "features": features.to_dict(),
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
        classes=labels, class_names=[label_name(lab) for lab in labels], features=features,
        normalization=normalization, info=info)
