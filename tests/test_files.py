"""File helpers (imssa_hw/files.py): atomic writes leave files as readable as the umask says;
a signal during a held write is handled once it is done; a folder where a file goes is one line
of bad input."""

from __future__ import annotations

import os
import signal
import stat
import threading

import numpy as np
import pytest

from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path, remove_stale, signals_held, write_json


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """A report written atomically gets 0666 & ~umask, as any file the user writes (a
    temporary file alone would stay 0600, unreadable to colleagues on a shared server)."""
    old = os.umask(umask)
    try:
        write_json(tmp_path / "report.json", {"a": 1})
        with atomic_path(tmp_path / "maps.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, x=np.zeros(2))
    finally:
        os.umask(old)
    for name in ("report.json", "maps.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert np.load(tmp_path / "maps.npz")["x"].shape == (2,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.npz", "report.json"]


class Stop(KeyboardInterrupt):
    """What `imssa-hw` raises for SIGTERM (cli.interrupt.Interrupted), as a test's own."""


def test_a_signal_during_a_held_write_is_handled_once_when_it_is_whole(tmp_path):
    """numpy's .npz writer, cut by an interrupt, raises a ValueError about its zip file instead
    (a traceback, not the clean end a signal gets): held, the write finishes and the handler
    runs once, after it; an ignored signal stays ignored; the handlers are put back."""
    handled = []

    def stop(signum, frame):
        handled.append(signum)
        raise Stop

    previous = signal.signal(signal.SIGTERM, stop)
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with pytest.raises(Stop):
            with signals_held(), atomic_path(tmp_path / "maps.npz") as tmp, open(tmp, "wb") as f:
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGHUP)
                assert handled == []
                np.savez(f, x=np.arange(3))
        assert handled == [signal.SIGTERM]
        assert np.load(tmp_path / "maps.npz")["x"].tolist() == [0, 1, 2]
        assert signal.getsignal(signal.SIGTERM) is stop
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        with pytest.raises(Stop):  # unheld, the handler runs at once
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, ignored)


def test_outside_the_main_thread_a_held_block_runs_as_it_is():
    """Handlers can only be set, and only run, in the main thread."""
    ran = []
    worker = threading.Thread(target=lambda: ran.append(signals_held().__enter__() is None))
    worker.start()
    worker.join()
    assert ran == [True]


def test_a_folder_where_a_file_goes_is_bad_input(tmp_path):
    """Writing over a folder, or removing a stale plot that is a folder, says so in one line
    (`imssa-hw compile --out D` where D/targets.png is a folder gave a traceback); the folder
    stays, and no temporary file is left behind."""
    (tmp_path / "report.json").mkdir()
    (tmp_path / "old.png").write_bytes(b"png")
    with pytest.raises(BadInput, match=r"^cannot write .*report.json: Is a directory$"):
        write_json(tmp_path / "report.json", {"a": 1})
    with pytest.raises(BadInput, match=r"^cannot remove .*report.json: Is a directory$"):
        remove_stale(tmp_path, ["old.png", "report.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    assert (tmp_path / "report.json").is_dir()
    remove_stale(tmp_path, ["missing.png"])  # nothing there: nothing to do
