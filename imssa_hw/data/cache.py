"""Feature cache: one .npz per set of settings, keyed by a hash, written atomically and read
without pickle. A file that cannot be read back as expected counts as absent."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from imssa_hw.files import cache_root, readable_mode, signals_held

ARRAYS = ("x_train", "y_train", "x_test", "y_test", "speaker_train", "origin_train", "copy_train")


def default_cache_dir() -> Path:
    """The data cache: <cache root>/data (root: $IMSSA_HW_CACHE or ~/.cache/imssa-hw)."""
    return cache_root() / "data"


def cache_key(settings: dict[str, Any]) -> str:
    """Hex digest of the JSON of `settings` (sorted keys)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load(path: Path) -> dict[str, Any] | None:
    """The arrays and info stored at `path`, or None if it is absent, corrupt or incomplete."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            out: dict[str, Any] = {name: np.array(npz[name]) for name in ARRAYS}
            out["info"] = json.loads(str(npz["info"]))
    except Exception:  # zip, key, value, JSON errors: treat as absent
        return None
    x_train, x_test = out["x_train"], out["x_test"]
    per_sample = {name: len(out["x_test" if name.endswith("_test") else "x_train"])
                  for name in ARRAYS if not name.startswith("x_")}
    ok = (x_train.ndim == 3 and x_test.ndim == 3 and x_train.shape[1:] == x_test.shape[1:]
          and x_train.dtype == np.float32 and x_test.dtype == np.float32
          and all(out[name].shape == (n,) and out[name].dtype == np.int64
                  for name, n in per_sample.items())
          and isinstance(out["info"], dict)
          and bool(np.isfinite(x_train).all() and np.isfinite(x_test).all()))
    return out if ok else None


def save(path: Path, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> bool:
    """Write atomically (temp file in the same folder, then os.replace); False (with a
    warning) if the folder is not writable."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with signals_held(), tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=path.stem + ".", suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
            np.savez(tmp, info=np.array(json.dumps(info)), **{k: arrays[k] for k in ARRAYS})
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, readable_mode())
        os.replace(tmp_name, path)
        return True
    except OSError as exc:
        warnings.warn(f"could not write the data cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
        return False
