"""Sequences a lab has already featurized, in one .npz file (`--dataset arrays`).

The file holds `x_train` and `x_test` (n, L, F) or (n, L) (one value per step), `y_train` and
`y_test` (n,) integer class indices, and optionally `class_names` (strings, one per class;
without them the classes are the labels that occur, named by their number). It is read with
`allow_pickle=False`: an object array (a pickle) is refused, nothing is executed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imssa_hw.errors import BadInput

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("class_names",)
UCI_DIGITS = Path(__file__).resolve().parent / "uci_digits" / "digits.npz"
"""The shipped second workload: 8x8 UCI optical digits as 8 rows of 8 pixels (CC BY 4.0)."""


@dataclass(frozen=True)
class Sequences:
    """Both splits of a sequence data set: x float32 (n, L, F), y int64 class index 0..C-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def _features(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or 0 in x.shape:
        raise BadInput(f"{path}: {name} must be (samples, steps, features) or (samples, steps), "
                       f"got shape {x.shape}")
    if x.dtype.kind not in "iuf":
        raise BadInput(f"{path}: {name} must hold numbers, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise BadInput(f"{path}: {name} holds values that are not finite (nan or inf)")
    return x


def _labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise BadInput(f"{path}: {name} must be {n} integer class indices (one per sample), "
                       f"got dtype {y.dtype}, shape {y.shape}")
    if n and int(y.min()) < 0:
        raise BadInput(f"{path}: {name} holds a negative class index ({int(y.min())})")
    return y.astype(np.int64)


def read_sequences(path: str | Path) -> Sequences:
    """The sequences of an .npz file; BadInput (one line naming the file) for anything else."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"{path}: no such file (an .npz with {', '.join(REQUIRED)})")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise BadInput(f"{path}: a single array, not an .npz with {', '.join(REQUIRED)}")
        with loaded as npz:
            missing = [k for k in REQUIRED if k not in npz.files]
            if missing:
                raise BadInput(f"{path}: no {', '.join(missing)} (an .npz with "
                               f"{', '.join(REQUIRED)} and optionally class_names)")
            unknown = sorted(set(npz.files) - set(REQUIRED) - set(OPTIONAL))
            if unknown:
                raise BadInput(f"{path}: unknown arrays {', '.join(unknown)} (known: "
                               f"{', '.join(REQUIRED + OPTIONAL)})")
            raw = {k: np.array(npz[k]) for k in npz.files}
    except BadInput:
        raise
    except ValueError as exc:  # object arrays need pickle: refused
        raise BadInput(f"{path}: cannot be read without executing code or is not an .npz "
                       f"({str(exc).splitlines()[0]})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise BadInput(f"{path}: not a readable .npz ({exc})") from None
    x_train = _features(path, "x_train", raw["x_train"])
    x_test = _features(path, "x_test", raw["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise BadInput(f"{path}: x_train has steps x features {x_train.shape[1:]}, x_test "
                       f"{x_test.shape[1:]}: they must be the same")
    y_train = _labels(path, "y_train", raw["y_train"], len(x_train))
    y_test = _labels(path, "y_test", raw["y_test"], len(x_test))
    top = int(max(y_train.max(), y_test.max()))
    if "class_names" in raw:
        names = raw["class_names"]
        if names.dtype.kind != "U" or names.ndim != 1:
            raise BadInput(f"{path}: class_names must be a list of strings, got dtype "
                           f"{names.dtype}, shape {names.shape}")
        if top >= len(names):
            raise BadInput(f"{path}: class index {top} but only {len(names)} class_names")
        class_names = [str(s) for s in names]
    else:
        class_names = [str(i) for i in range(top + 1)]
    absent = sorted(set(range(len(class_names))) - set(y_train.tolist()))
    if absent:
        raise BadInput(f"{path}: no training sample of class "
                       f"{', '.join(class_names[i] for i in absent)}")
    if len(class_names) < 2:
        raise BadInput(f"{path}: a classifier needs at least two classes, y_train has one")
    return Sequences(x_train, y_train, x_test, y_test, class_names)
