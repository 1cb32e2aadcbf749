"""File helpers (imssa_hw/files.py): atomic writes leave files as readable as the umask says."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from imssa_hw.files import atomic_path, write_json


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
