"""The unit rule: `_s` is seconds only, conductances end in `_siemens`; the names conductances
had before 0.4 (the table in docs/units.md) are refused in one line wherever they are read."""

from __future__ import annotations

import ast
import functools
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from imssa_hw.calibration.data import Calibration, load_calibration
from imssa_hw.compiler.defects import defects_from_dict
from imssa_hw.drivers.errors import PayloadError
from imssa_hw.drivers.messages import (BoardConfig, from_json, to_json, unpack_config_changes,
                                       unpack_identify)
from imssa_hw.emulator.profile import board_info, load_emulator_profile
from imssa_hw.emulator.state import load_state
from imssa_hw.errors import BadInput
from imssa_hw.files import read_npz
from imssa_hw.hil.budget import load_programmed
from imssa_hw.programming.journal import encode_record, parse_record

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("imssa_hw", "drivers", "calibration", "cli")
           for p in (ROOT / folder).rglob("*.py")]
BENCHES = sorted((ROOT / "bench").glob("*.py"))
RENAMED = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \|$", (ROOT / "docs" / "units.md").read_text(),
                          re.MULTILINE))
"""The conductance names of before 0.4 -> their names now (docs/units.md)."""


@functools.cache
def names_in(path: Path) -> frozenset[str]:
    """Every identifier, attribute, argument and string constant of a source file (parsed once
    per test process: two tests ask)."""
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
    return frozenset(found)


TIME = re.compile(r"(^|_)(times?|elapsed|duration|latency|perf_counter|monotonic|clock)($|_)|_s$")
"""A name that holds a time (or reads a clock)."""


def microsiemens_fields_holding_times(source: str) -> list[str]:
    """Output fields named `*_us` (dict keys, keyword arguments, `x["..._us"] = ...`) whose value
    is computed from a time: `_us` is microsiemens, never microseconds."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values)
                     if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        elif isinstance(node, ast.keyword) and node.arg:
            pairs = [(node.arg, node.value)]
        elif isinstance(node, ast.Assign):
            pairs = [(t.slice.value, node.value) for t in node.targets
                     if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                     and isinstance(t.slice.value, str)]
        else:
            continue
        for key, value in pairs:
            names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(value)
                     if isinstance(n, (ast.Name, ast.Attribute))}
            if key.endswith("_us") and any(TIME.search(name) for name in names):
                found.append(key)
    return found


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message of a raised error, checked to be one line."""
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


def test_the_table_of_old_names_is_whole():
    assert len(RENAMED) > 50 and RENAMED["g_s"] == "g_siemens"
    assert all(new == f"{old[:-2]}_siemens" for old, new in RENAMED.items())


def test_no_conductance_name_ends_in_seconds_suffix():
    """No conductance-like name ends in `_s` anywhere; in the package no old name is used at all
    (bench output may name a time `median_s`, which was a conductance before 0.4)."""
    old = re.compile(r"^(g|g_\w+|\w*_g|dg|\w*conductance|\w*tolerance|tol)_s$")
    offenders = {f"{p.relative_to(ROOT)}: {n}" for p, package in
                 [*((p, True) for p in SOURCES), *((p, False) for p in BENCHES)]
                 for n in names_in(p) if old.match(n) or (package and n in RENAMED)}
    assert not offenders, sorted(offenders)


def test_no_retired_name_is_used():
    """Names 0.13 replaced (CHANGELOG): one name for one thing, the unit in the name."""
    retired = {"v_read", "set_v_max", "reset_v_max", "gate_v_max", "1t1r", "ARRAY_KINDS",
               "load_profile", "Settings", "ProgrammingSettings", "median_us", "p99_us"}
    recognized = {"imssa_hw/programming/export.py: v_read"}  # says what an old journal holds
    offenders = {f"{p.relative_to(ROOT)}: {n}" for p in [*SOURCES, *BENCHES]
                 for n in names_in(p) & retired} - recognized
    assert not offenders, sorted(offenders)


def test_no_output_field_in_us_holds_a_time():
    offenders = {f"{p.relative_to(ROOT)}: {key}" for p in [*SOURCES, *BENCHES]
                 for key in microsiemens_fields_holding_times(p.read_text())}
    assert not offenders, sorted(offenders)
    assert microsiemens_fields_holding_times(  # what bench/link.py reported before 0.13
        'def f():\n    return {"median_us": round(float(np.median(times)) * 1e6, 1)}') == ["median_us"]
    assert microsiemens_fields_holding_times('r["wait_us"] = (time.perf_counter() - t0) * 1e6\n'
                                             'report(step_us=step_s * 1e6)') == ["wait_us", "step_us"]
    assert microsiemens_fields_holding_times('x = {"g_us": g_siemens * 1e6}') == []


def test_an_old_emulator_override_key_is_refused_in_one_line():
    with pytest.raises(BadInput) as exc:
        load_emulator_profile(None, {"relaxation.sigma_min_s": 0.0})
    assert "relaxation.sigma_min_s" in one_line(exc)


def test_an_emulator_profile_with_an_old_key_is_refused_in_one_line(tmp_path):
    text = (resources.files("imssa_hw") / "profiles" / "emulator-default.toml").read_text()
    path = tmp_path / "old.toml"
    path.write_text(text.replace("stuck_off_g_siemens", "stuck_off_g_s"))
    with pytest.raises(BadInput) as exc:
        load_emulator_profile(path)
    message = one_line(exc)
    assert "unknown field(s) stuck_off_g_s" in message
    assert "missing field(s) stuck_off_g_siemens" in message


def test_an_old_calibration_file_is_refused_in_one_line(tmp_path):
    data = {"format": "imssa-hw-calibration", "version": 1, "board_id": "b", "arrays": 1,
            "rows": 2, "cols": 2, "read_gain": [[1.0, 1.0]], "read_offset_s": [[1e-7, 0.0]],
            "v_read_v": 0.2, "read_range_a": 1e-4}
    (tmp_path / "calib.json").write_text(json.dumps(data))
    with pytest.raises(BadInput) as exc:
        load_calibration(tmp_path)
    assert one_line(exc).endswith("calib.json: lacks read_offset_siemens")
    data["read_offset_siemens"] = data.pop("read_offset_s")
    assert Calibration.from_dict(data).read_offset_siemens[0, 0] == 1e-7


def test_old_archive_and_defect_keys_are_refused(tmp_path):
    np.savez(tmp_path / "targets.npz", targets_s=np.ones((1, 2, 2)))
    assert set(read_npz(tmp_path / "targets.npz", "targets")) == {"targets_s"}  # as written
    np.savez(tmp_path / "achieved.npz", achieved_s=np.ones((1, 2, 2)), status=np.zeros((1, 2, 2)))
    with pytest.raises(BadInput) as exc:
        load_programmed(tmp_path / "achieved.npz")
    assert "no achieved_siemens" in one_line(exc)
    stuck = {"array": 0, "row": 0, "col": 0, "kind": "stuck_on", "g_s": 1e-4}
    with pytest.raises(BadInput) as exc:
        defects_from_dict({"format": "imssa-hw-defects", "version": 1, "arrays": 1, "rows": 2,
                           "cols": 2, "stuck": [stuck]})
    assert one_line(exc).endswith("unknown key(s) g_s")


def test_a_board_reply_with_an_old_field_is_refused_in_one_line():
    reply = json.loads(to_json(board_info(load_emulator_profile(None)).reply()))
    reply["g_window_s"] = reply.pop("g_window_siemens")
    with pytest.raises(PayloadError) as exc:
        unpack_identify(json.dumps(reply).encode())
    assert one_line(exc) == ("IdentifyReply: unknown field(s) g_window_s; missing field(s) "
                             "g_window_siemens")
    reply["g_window_siemens"] = reply.pop("g_window_s")
    assert unpack_identify(json.dumps(reply).encode()).g_window_siemens == (1e-6, 150e-6)


def test_the_read_voltage_is_v_read_v_on_the_wire():
    config = {"v_read_v": 0.2, "read_range_a": 4e-5, "vmm_range_a": 6.4e-4, "pulse_width_s": 2e-8}
    assert from_json(BoardConfig, json.dumps(config).encode()).v_read_v == 0.2
    assert unpack_config_changes(b'{"v_read_v": 0.1}') == {"v_read_v": 0.1}
    config["v_read"] = config.pop("v_read_v")  # the name before 0.13
    with pytest.raises(PayloadError) as exc:
        from_json(BoardConfig, json.dumps(config).encode())
    assert one_line(exc) == "BoardConfig: unknown field(s) v_read; missing field(s) v_read_v"
    with pytest.raises(PayloadError) as exc:
        unpack_config_changes(b'{"v_read": 0.1}')
    assert "v_read_v" in one_line(exc)


def test_journal_records_keep_their_keys():
    record = {"type": "read", "t": 1.0, "g_s": [1.0]}
    assert parse_record(encode_record(record)[:-1]) == record


@pytest.mark.parametrize("version", [1, 2])
def test_an_emulator_state_of_an_older_format_is_refused_in_one_line(tmp_path, version):
    np.savez(tmp_path / "old.npz", format=np.asarray(version), seed=np.asarray(0))
    with pytest.raises(BadInput) as exc:
        load_state(tmp_path / "old.npz")
    message = one_line(exc)
    assert f"state format {version} (this imssa-hw reads format 3)" in message
    assert "start the emulator with a fresh state" in message


def test_an_emulator_state_with_old_device_keys_is_refused_in_one_line(tmp_path):
    from imssa_hw.emulator.server import build_board
    from imssa_hw.emulator.state import save_state

    board, _ = build_board(load_emulator_profile(None, {"board.arrays": 1, "board.rows": 2,
                                               "board.cols": 2}), 0, None)
    save_state(tmp_path / "board.npz", board.state)
    assert load_state(tmp_path / "board.npz").devices.g_final_siemens.shape == (1, 2, 2)
    with np.load(tmp_path / "board.npz") as data:  # the stacked fields under names of before 0.4
        arrays = {k: data[k] for k in data.files}
    names = arrays["devices.stacked_names"]
    arrays["devices.stacked_names"] = np.char.replace(names, "_siemens", "_s")
    np.savez(tmp_path / "board.npz", **arrays)
    with pytest.raises(BadInput) as exc:
        load_state(tmp_path / "board.npz")
    assert "devices.g_final_siemens" in one_line(exc)
