"""File helpers: atomic writes, so that nothing is ever left half-written."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, readable_mode())  # mkstemp makes 0600: as any file the user writes
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def readable_mode() -> int:
    """The mode a new file gets from the user's umask (0666 & ~umask)."""
    try:  # Linux states it; reading it elsewhere means setting it, briefly, for every thread
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines()
                         if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


# Conductances whose names ended in `_s` before version 0.4 end in `_siemens` now (`_s` is for
# seconds only). Files, journals, profiles and board replies with the old names still load, for
# one version: `upgrade_legacy_keys` renames them (docs/units.md lists every renamed key).
LEGACY_SIEMENS_KEYS = frozenset({
    "achieved_s", "decision_tolerance_s", "dg_s", "drift_s", "end_s", "full_change_s",
    "g_board_s", "g_final_s", "g_max_s", "g_min_s", "g_off_s", "g_off_sigma_s", "g_on_max_s",
    "g_on_max_sigma_s", "g_on_s", "g_s", "g_smu_s", "g_window_s", "high_s", "max_abs_change_s",
    "max_s", "mean_abs_error_s", "mean_change_s", "mean_s", "median_abs_change_s",
    "median_abs_change_to_final_s", "median_abs_error_s", "median_s", "median_true_abs_error_s",
    "min_s", "noise_floor_s", "off_s", "offset_s", "p95_abs_change_s", "p95_abs_error_s",
    "raw_high_s", "raw_mean_s", "raw_single_s", "read_lsb_s", "read_offset_s", "relax_s",
    "relaxation_median_abs_change_s", "reset_c2c_floor_s", "reset_noise_floor_s", "set_c2c_min_s",
    "set_c2c_sigma_s", "set_gain_s", "sigma_max_s", "sigma_min_s", "sigma_s", "spread_s",
    "stuck_off_g_s", "stuck_on_g_s", "stuck_on_sigma_s", "target_s", "targets_s", "tolerance_s",
    "truth_s"})


def upgrade_legacy_keys(data: object) -> object:
    """`data` (JSON-like: dicts, lists, values) with every key of `LEGACY_SIEMENS_KEYS`, or a
    dotted key ending in one, renamed to its `_siemens` name; everything else as it was."""
    if isinstance(data, dict):
        return {_new_key(k) if isinstance(k, str) else k: upgrade_legacy_keys(v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [upgrade_legacy_keys(v) for v in data]
    return data


def _new_key(key: str) -> str:
    head, _, last = key.rpartition(".")
    if last not in LEGACY_SIEMENS_KEYS:
        return key
    return f"{head}.{last[:-2]}_siemens" if head else f"{last[:-2]}_siemens"


def check_writable(path: str | Path, folder: bool = False) -> None:
    """`BadInput` (one line) unless `path` can be written later as a file (or, with `folder`,
    as a folder): it is not a folder where a file is wanted nor the reverse (nor a device), and
    the nearest folder that exists above it takes new files (checked by creating one; missing
    folders between are created when the output is written, as `atomic_path` does)."""
    from imssa_hw.errors import BadInput

    if not str(path):
        raise BadInput(f"an empty path names no {'folder' if folder else 'file'}")
    path = Path(path)
    if os.path.exists(path):
        if os.path.isdir(path) != folder:
            raise BadInput(f"{path} is a {'file' if folder else 'folder'}, not a "
                           f"{'folder' if folder else 'file'}")
        if not folder and not os.path.isfile(path):
            raise BadInput(f"{path} is not a regular file")
    above = Path(os.path.abspath(path if folder else path.parent))
    while not os.path.lexists(above):
        above = above.parent
    if not os.path.isdir(above):
        raise BadInput(f"cannot write {path}: {above} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=above, prefix=".imssa-hw-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: cannot create files in {above} "
                       f"({exc.strerror})") from None


def write_json(path: str | Path, data: dict) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def cache_root() -> Path:
    """The cache folder: $IMSSA_HW_CACHE, else ~/.cache/imssa-hw (data/ and models/ inside)."""
    env = os.environ.get("IMSSA_HW_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "imssa-hw"


def read_json(path: str | Path, missing: str) -> object:
    """Parse the JSON file at `path`; `BadInput` "`missing`: PATH" when there is none, and
    one naming the file when it is not JSON. Nothing is executed (JSON only)."""
    from imssa_hw.errors import BadInput

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{missing}: {path}")
    try:
        return upgrade_legacy_keys(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None


def read_npz(path: str | Path, what: str) -> dict:
    """Every array of the numpy archive at `path` (no pickles: object arrays are refused);
    `BadInput` naming `what` and the file when it is missing or not such an archive."""
    import zipfile

    import numpy as np

    from imssa_hw.errors import BadInput

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} not found: {path}")
    if not zipfile.is_zipfile(path):
        raise BadInput(f"{path} is not a numpy .npz archive ({what})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return upgrade_legacy_keys({name: np.array(archive[name]) for name in archive.files})
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"{path}: unreadable {what} ({exc})") from None
