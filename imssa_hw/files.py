"""File helpers: atomic writes, so that nothing is ever left half-written."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from imssa_hw.errors import BadInput


HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
"""The signals `signals_held` holds: Ctrl-C, and what `imssa-hw` turns into `Interrupted`."""


@contextmanager
def signals_held() -> Iterator[None]:
    """Handle HELD_SIGNALS that arrive during the block when it ends, each once, by the handler
    it had (an ignored one stays ignored): for a write that a handler raising in its middle
    would break instead of stop (numpy's .npz writer turns an interrupt into a ValueError about
    its zip file). Python runs handlers in the main thread only: elsewhere the block runs as
    it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    before = {}
    for sig in HELD_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not signal.SIG_IGN and handler is not None:  # None: not set from Python
            before[sig] = signal.signal(sig, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


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
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. a folder of that name
            raise BadInput(f"cannot write {path}: {exc.strerror}") from None
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


def check_writable(path: str | Path, folder: bool = False) -> None:
    """`BadInput` (one line) unless `path` can be written later as a file (or, with `folder`,
    as a folder): it is not a folder where a file is wanted nor the reverse (nor a device), and
    the nearest folder that exists above it takes new files (checked by creating one; missing
    folders between are created when the output is written, as `atomic_path` does)."""
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


def remove_stale(folder: str | Path, names: Iterable[str]) -> None:
    """Remove the files `names` from `folder` where they exist: outputs of an earlier run that
    this run does not write (`--no-plots`), which would show another run."""
    for name in names:
        path = Path(folder) / name
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # e.g. a folder of that name
            raise BadInput(f"cannot remove {path}: {exc.strerror}") from None


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
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{missing}: {path}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None


def write_npz(path: str | Path, arrays: dict, compressed: bool = False) -> None:
    """`arrays` as a numpy .npz archive at `path`, without pickles, atomically and whole: a
    signal that arrives meanwhile is handled once the file is written (`signals_held`)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with signals_held(), atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save(handle, **arrays)


def read_npz(path: str | Path, what: str) -> dict:
    """Every array of the numpy archive at `path` (no pickles: object arrays are refused);
    `BadInput` naming `what` and the file when it is missing or not such an archive."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} not found: {path}")
    if not zipfile.is_zipfile(path):
        raise BadInput(f"{path} is not a numpy .npz archive ({what})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: np.array(archive[name]) for name in archive.files}
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"{path}: unreadable {what} ({exc})") from None
