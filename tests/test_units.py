"""The unit rule: `_s` is seconds only, conductances end in `_siemens`; files written with the
old conductance names still load for one version (docs/units.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from imssa_hw.calibration.data import Calibration
from imssa_hw.emulator.profile import load_profile
from imssa_hw.files import LEGACY_SIEMENS_KEYS, read_npz, upgrade_legacy_keys

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("imssa_hw", "drivers", "calibration", "cli")
           for p in (ROOT / folder).rglob("*.py")]


def names_in(path: Path) -> set[str]:
    """Every identifier, attribute, argument and string constant of a source file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def test_no_conductance_name_ends_in_seconds_suffix():
    old = re.compile(r"^(g|g_\w+|\w*conductance|\w*tolerance|tol)_s$")
    offenders = {f"{p.relative_to(ROOT)}: {n}" for p in SOURCES if p.name != "files.py"
                 for n in names_in(p) if old.match(n) or n in LEGACY_SIEMENS_KEYS}
    assert not offenders, sorted(offenders)


def test_old_keys_are_renamed_at_any_depth_and_nothing_else_is():
    old = {"g_window_s": [1e-6, 1e-4], "timeout_s": 0.5,
           "stuck": [{"g_s": 2e-7, "target_s": 1e-5}], "device.set_gain_s": 1.0}
    assert upgrade_legacy_keys(old) == {
        "g_window_siemens": [1e-6, 1e-4], "timeout_s": 0.5,
        "stuck": [{"g_siemens": 2e-7, "target_siemens": 1e-5}], "device.set_gain_siemens": 1.0}


def test_an_old_emulator_override_key_still_works():
    profile = load_profile(None, {"relaxation.sigma_min_s": 0.0})
    assert profile.relaxation.sigma_min_siemens == 0.0


def test_an_old_calibration_file_and_targets_archive_still_load(tmp_path):
    cal = Calibration.from_dict(upgrade_legacy_keys({
        "format": "imssa-hw-calibration", "version": 1, "board_id": "b", "arrays": 1, "rows": 2, "cols": 2,
        "read_gain": [[1.0, 1.0]], "read_offset_s": [[1e-7, 0.0]], "v_read_v": 0.2,
        "read_range_a": 1e-4}))
    assert cal.read_offset_siemens[0, 0] == 1e-7
    np.savez(tmp_path / "targets.npz", targets_s=np.ones((1, 2, 2)))
    assert set(read_npz(tmp_path / "targets.npz", "targets")) == {"targets_siemens"}
