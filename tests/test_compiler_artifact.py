"""Deploy directory round trip and validation; profiles, defect maps and voltage scales."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
from support.models import board_profile, make_checkpoint, sequences

from imssa_hw.board import load_board_profile, shipped_profiles
from imssa_hw.board.profile import LoopTiming, profile_from_dict
from imssa_hw.compiler import (Executor, compile_checkpoint, load_defects, load_deployment,
                               save_deployment)
from imssa_hw.compiler.defects import DefectMap, StuckDevice
from imssa_hw.errors import BadInput


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deploy")
    ckpt = make_checkpoint(folder / "m.pt", h=8, n=4, layers=2, bits=2, seed=5)
    dep = compile_checkpoint(ckpt, board_profile())
    save_deployment(dep, folder / "out")
    return ckpt, dep, folder / "out"


def test_round_trip(deployed):
    ckpt, dep, out = deployed
    back = load_deployment(out)
    assert back.model_digest == ckpt.digest and back.config == ckpt.config
    assert back.profile == dep.profile and back.summary == dep.summary
    assert back.dg_siemens == dep.dg_siemens
    assert np.array_equal(back.targets_siemens, dep.targets_siemens)
    assert np.array_equal(back.used, dep.used)
    for a, b in zip(back.schedule.layers, dep.schedule.layers):
        for pa, pb in zip(a.programs, b.programs):
            for name in ("row_input", "row_input_gain_v", "row_feedback",
                         "row_feedback_gain_v_per_a", "out_plus", "out_minus"):
                assert np.array_equal(getattr(pa, name), getattr(pb, name)), name
        assert np.array_equal(a.y_scale, b.y_scale) and np.array_equal(a.tia_range_a, b.tia_range_a)
    assert [(t.array, t.rows.tolist()) for t in back.placement.tiles] == \
        [(t.array, t.rows.tolist()) for t in dep.placement.tiles]
    # the loaded artifact reproduces its own probe expectations
    executor = Executor.on_maps(back.schedule, back.targets_siemens)
    for layer, (u, y) in enumerate(zip(back.probe.u, back.probe.y)):
        assert np.allclose(executor(layer, u), y, atol=1e-6)
    data = json.loads((out / "deploy.json").read_text())
    program = data["schedule"]["layers"][0]["programs"][0]
    assert len(program["row_input"]) == 64
    assert isinstance(program["row_feedback_gain_v_per_a"][0], float)
    assert set(data["schedule"]["modes"]) == {"host_loop", "on_board_loop"}


def _copy(out, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for f in out.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def _edit_json(folder, change):
    data = json.loads((folder / "deploy.json").read_text())
    change(data)
    (folder / "deploy.json").write_text(json.dumps(data))


def test_missing_files(deployed, tmp_path):
    with pytest.raises(BadInput, match="deploy.json not found"):
        load_deployment(tmp_path / "nowhere")
    folder = _copy(deployed[2], tmp_path)
    (folder / "targets.npz").unlink()
    with pytest.raises(BadInput, match="targets.npz not found"):
        load_deployment(folder)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.update(format="other"), "not an imssa-hw deployment"),
    (lambda d: d.pop("schedule"), "missing section 'schedule'"),
    (lambda d: d["schedule"]["layers"][0]["programs"][0]["row_input"].pop(),
     r"programs\[0\]: the row fields must have 64 entries"),
    (lambda d: d["schedule"]["layers"][1]["programs"][0]["out_plus"].__setitem__(0, 64),
     r"out_plus must name columns 0..63"),
    (lambda d: d["schedule"]["layers"][0]["y_scale"].pop(), "y_scale must have 8 entries"),
    (lambda d: d["profile"]["conductance"].update(g_min_us=-1), "g_min_us = -1 is impossible"),
    (lambda d: d["targets"].update(sha256="0" * 64), "does not match"),
    (lambda d: d["schedule"].update(v_read_max=40.0), r"schedule: v_read_max = 40.0 is impossible "
                                                      r"\(allowed 0.001 .. 32.767\)"),
    (lambda d: d["placement"].update(mode="auto"), "placement.mode must be diagonal or dense, "
                                                   "got 'auto'"),
    (lambda d: d["placement"]["tiles"][1].update(rows=d["placement"]["tiles"][0]["rows"]),
     r"placement.tiles overlap \(diagonal placement: two tiles share a row or column\)"),
])
def test_validation_names_what_is_wrong(deployed, tmp_path, change, message):
    folder = _copy(deployed[2], tmp_path)
    _edit_json(folder, change)
    with pytest.raises(BadInput, match=message):
        load_deployment(folder)


def test_a_board_reading_at_more_than_a_volt_loads_its_deployment(tmp_path):
    """The schedule's row voltage limit is the board's, within the range a board profile allows
    (0.001 .. 32.767 V), not a range of the schedule's own."""
    profile = board_profile(1, 32, 32)
    profile = replace(profile, read=replace(profile.read, v_read_max=1.2))
    ckpt = make_checkpoint(tmp_path / "m.pt", h=2, n=4, bits=2, seed=5)
    save_deployment(compile_checkpoint(ckpt, profile), tmp_path / "out")
    assert load_deployment(tmp_path / "out").schedule.v_read_max == 1.2


def test_placement_mode_round_trip(deployed, tmp_path):
    """Dense deployments say so and load back; a deploy.json from before the mode is diagonal;
    dense tiles (sharing rows) are refused as diagonal ones."""
    ckpt, diagonal, out = deployed
    dense = compile_checkpoint(ckpt, board_profile(), placement="dense")
    save_deployment(dense, tmp_path / "dense")
    back = load_deployment(tmp_path / "dense")
    assert back.placement.mode == "dense" and back.summary == dense.summary
    assert back.placement.kernels_per_array == dense.placement.kernels_per_array == 72
    assert [(t.array, t.rows.tolist(), t.cols.tolist()) for t in back.placement.tiles] == \
        [(t.array, t.rows.tolist(), t.cols.tolist()) for t in dense.placement.tiles]
    older = _copy(out, tmp_path)
    _edit_json(older, lambda d: d["placement"].pop("mode"))
    assert load_deployment(older).placement.mode == "diagonal"
    _edit_json(tmp_path / "dense", lambda d: d["placement"].update(mode="diagonal"))
    with pytest.raises(BadInput, match="two tiles share a row or column"):
        load_deployment(tmp_path / "dense")


def test_bad_array_shapes(deployed, tmp_path):
    folder = _copy(deployed[2], tmp_path)
    with np.load(folder / "targets.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["targets_siemens"] = arrays["targets_siemens"][:, :32]
    with open(folder / "targets.npz", "wb") as f:
        np.savez(f, **arrays)
    digest = hashlib.sha256((folder / "targets.npz").read_bytes()).hexdigest()
    _edit_json(folder, lambda d: d["targets"].update(sha256=digest))
    with pytest.raises(BadInput, match=r"targets_siemens has shape \(3, 32, 64\).*"
                                       r"expected \(3, 64, 64\)"):
        load_deployment(folder)


def test_shipped_profiles_load_and_round_trip():
    assert {"board-default", "board-large"} <= set(shipped_profiles())
    p = load_board_profile("board-default")
    assert p.geometry.shape == (3, 64, 64) and p.read.v_read_max == 0.2 and p.read.adc_bits == 9
    assert p.conductance.g_min_siemens == 1e-6 and p.conductance.g_max_siemens == 155e-6
    assert p.limits.v_set_max == 3.5 and p.limits.v_reset_max == 1.5 and p.limits.v_gate_max == 5.5
    assert p.timing.vmm_time_s == 1e-6
    assert profile_from_dict(p.to_dict()) == p
    untimed = p.to_dict()
    del untimed["timing"]
    assert profile_from_dict(untimed).timing.step_time_s(64) is None


def test_time_per_step_and_sample(deployed):
    """The compile report's times: VMMs per step times the VMM time; layers run in turn."""
    ckpt = deployed[0]
    timed = replace(board_profile(), timing=LoopTiming(vmm_time_s=2e-6))
    s = compile_checkpoint(ckpt, timed).summary
    assert s["step_time_s"] == [pytest.approx(2e-6 * v) for v in s["vmms_per_step"]]
    per_layer = s["steps_per_sample"] // len(s["vmms_per_step"])
    assert s["sample_time_s"] == pytest.approx(per_layer * 2e-6 * sum(s["vmms_per_step"]))
    untimed = compile_checkpoint(ckpt, replace(board_profile(), timing=LoopTiming())).summary
    assert untimed["sample_time_s"] is None and set(untimed["step_time_s"]) == {None}


@pytest.mark.parametrize("section,key,value,message", [
    ("conductance", "g_min_us", 200.0, r"\[conductance\].*g_min < g_max, got 200 \.\. 155 uS"),
    ("conductance", "tolerance_us", 154.0, "tolerance .* must be smaller than the window"),
    ("board", "rows", 0, "rows = 0 is impossible"),
    ("read", "v_read_max", 40.0, "v_read_max = 40.0 is impossible"),
    ("read", "tia_ranges_ua", [100.0, 20.0], "distinct and increasing"),
    ("limits", "v_reset_max", 0.15, "must stay below the SET and RESET limits"),
    ("board", "arrays", "three", "arrays must be an integer"),
    ("board", "colour", 1, "unknown key"),
    ("timing", "vmm_time_ns", -1.0, "vmm_time_ns = -1.0 is impossible"),
])
def test_impossible_profiles(section, key, value, message):
    data = load_board_profile("board-default").to_dict()
    data[section][key] = value
    with pytest.raises(BadInput, match=message):
        profile_from_dict(data)


def test_a_profile_with_the_limit_names_of_before_0_13_is_refused(tmp_path):
    text = (resources.files("imssa_hw") / "profiles" / "board-default.toml").read_text()
    for name in ("set", "reset", "gate"):
        text = text.replace(f"\nv_{name}_max = ", f"\n{name}_v_max = ")
    (tmp_path / "old.toml").write_text(text)
    with pytest.raises(BadInput) as exc:
        load_board_profile(tmp_path / "old.toml")
    assert str(exc.value) == (f"{tmp_path / 'old.toml'} [limits]: unknown key(s) gate_v_max, "
                              f"reset_v_max, set_v_max")


def test_profile_not_found():
    with pytest.raises(BadInput, match="board profile not found: nope.*board-default"):
        load_board_profile("nope")


def test_defect_map_round_trip_and_errors(tmp_path):
    geo = board_profile().geometry
    defects = DefectMap(3, 64, 64, (StuckDevice(0, 1, 2, "stuck_on", 1.4e-4),
                                    StuckDevice(2, 63, 0, "unresponsive", None)))
    defects.save(tmp_path / "d.json")
    assert load_defects(tmp_path / "d.json", geo) == defects
    with pytest.raises(BadInput, match="for a board of 3 arrays of 64x64, the profile has 2 "
                                       "arrays of 32x32"):
        load_defects(tmp_path / "d.json", board_profile(2, 32, 32).geometry)
    for entry, message in [({"array": 3, "row": 0, "col": 0, "kind": "stuck_on"}, "array must be"),
                           ({"array": 0, "row": 0, "col": 0, "kind": "broken"}, "kind must be"),
                           ({"array": 0, "row": 0, "col": 0, "kind": "stuck_on", "g_siemens": 5},
                            "g_siemens must be")]:
        data = defects.to_dict()
        data["stuck"].append(entry)
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(BadInput, match=message):
            load_defects(tmp_path / "bad.json", geo)


def test_voltage_scales_follow_the_stored_signal_ranges(tmp_path):
    """Wider training ranges -> smaller volts per unit; the rows stay within v_read_max."""
    x = sequences(4, 30).astype(np.float32)
    narrow = make_checkpoint(tmp_path / "a.pt", h=4, seed=2, range_features=x)
    ranges = [{k: [3 * v for v in r[k]] for k in r} for r in narrow.meta["signal_ranges"]]
    wide = replace(narrow, meta={**narrow.meta, "signal_ranges": ranges})
    probes = x[:1, :5]  # a part of x: the stored ranges dominate
    s_narrow = compile_checkpoint(narrow, board_profile(), probe_features=probes).schedule.layers[0]
    s_wide = compile_checkpoint(wide, board_profile(), probe_features=probes).schedule.layers[0]
    assert np.allclose(s_wide.state_scale_v, s_narrow.state_scale_v / 3)
    kernels = wide.kernels(0)
    u_volts = s_wide.state_scale_v * kernels.b_step / kernels.a_step * np.array(ranges[0]["u_max"])
    x_volts = s_wide.state_scale_v * np.array(ranges[0]["x_max"])
    assert np.allclose(np.maximum(u_volts, x_volts), 0.9 * 0.2, rtol=1e-5)
