"""`imssa-hw demo` end to end on a tiny configuration, and a sweep over two points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.data import AugmentSpec, DataSpec
from imssa_hw.training.trainer import train_task
from imssa_hw.workflows.sweep import SweepPoint, dask_client, run_points, table

from support.models import board_profile, profile_toml

TINY = DataSpec.default("zero-one", seed=1, n_train_per_class=12, n_test_per_class=6,
                        mix_synthetic=0, augment=AugmentSpec(copies=1))
"""A few real clips per class (the shipped recordings), one perturbed copy each."""


def _read_or_empty(path: Path) -> bytes:
    """A /proc file's bytes, or b"" for a process that ended meanwhile."""
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.fixture
def cache_env(tmp_path_factory):
    return {**os.environ, "IMSSA_HW_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}


@pytest.mark.slow(seconds=24)
def test_demo_tiny_end_to_end(tmp_path, cache_env):
    """The demo's own process and its emulated board's, on a board the user brings (a profile
    file of one 32x32 array: the emulated board takes its geometry; board-default's three
    64x64 arrays cost a smoke test 5 CPU-s more to calibrate and program). Without plots
    (each stage's tests look at its plots; they cost the demo 2-3 CPU-s), an earlier run's
    plot in the folder is removed."""
    out, profile = tmp_path / "demo", tmp_path / "one-array.toml"
    data = {**board_profile(1, 32, 32).to_dict(), "name": "one-array"}
    profile.write_text("\n".join(profile_toml(data)))
    (out / "deploy").mkdir(parents=True)
    (out / "deploy" / "targets.png").write_bytes(b"an earlier demo's")
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "demo", "--tiny", "--out",
                           str(out), "--board-profile", str(profile), "--no-plots"],
                          capture_output=True, text=True, timeout=600, env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("software_accuracy", "hardware_accuracy", "yield_working",
                "mean_pulses_per_device", "timings_s"):
        assert key in summary, key
    assert summary["yield_working"] > 0.99
    assert summary["board_profile"] == "one-array"
    calibration = json.loads((out / "calib" / "calib.json").read_text())
    assert (calibration["arrays"], calibration["rows"], calibration["cols"]) == (1, 32, 32)
    # a new cache and no shipped model for --tiny: trained in this run
    assert (summary["model_source"], summary["model_cached"]) == ("trained", False)
    assert summary["agreement"] >= 0.9
    for path in ("model.pt", "calib/calib.json", "calib/defects.json", "deploy/deploy.json",
                 "deploy/model.pt", "program.json", "infer.json"):
        assert (out / path).exists(), path
    assert not list(out.rglob("*.png")) and summary["settings"]["plots"] is False
    assert "hardware accuracy" in done.stdout
    assert not any(line.startswith("Traceback") for line in done.stderr.splitlines())
    # the emulator was stopped: no process runs on its state file any more
    state = str(out / "emulator" / "board.npz")
    assert Path(state).is_file()
    running = [p for p in Path("/proc").glob("[0-9]*/cmdline")
               if state.encode() in _read_or_empty(p).split(b"\0")]
    assert not running, running


def test_sweep_two_points(tmp_path, monkeypatch):
    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "model.pt"
    train_task(TINY, path, model={"bits": 2, "h": 2, "n": 4}, epochs=2)
    points = [SweepPoint(str(path), 2, sigma, 0, "noise") for sigma in (0.0, 30e-6)]
    results = run_points(points, workers=2)
    clean, noisy = sorted(results, key=lambda r: r["sigma_siemens"])
    assert clean["accuracy"] == clean["software_accuracy"]  # ideal maps reproduce the model
    assert clean["median_abs_error_siemens"] == 0.0
    # most tile cells are off (2 uS): noise below 0 S is clipped there, so the median error is 2 uS
    assert 1e-6 < noisy["median_abs_error_siemens"] <= 30e-6
    rows = table(results)
    assert [r["sigma_us"] for r in rows] == [0.0, 30.0]
    assert rows[0]["bits"] == 2 and rows[0]["paper_bits"] == 3  # the paper counts signed bits
    assert rows[0]["points_lost"] == 0.0  # against the same model without noise
    assert rows[1]["points_lost"] == round(100 * (noisy["software_accuracy"] - noisy["accuracy"]), 2)
    assert (rows[1]["models"], rows[1]["seeds"]) == (1, 1)
    assert [r["accuracy_mean"] for r in rows] == pytest.approx([clean["accuracy"], noisy["accuracy"]])
    assert np.isfinite([r["accuracy_std"] for r in rows]).all()


def test_a_two_layer_sweep_point_compiles_for_its_board(tmp_path, monkeypatch):
    """The ten-digit sweep's points: a two-layer model compiled for the task's board
    (board-multi); noiseless maps reproduce the model."""
    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "model.pt"
    train_task(TINY, path, model={"bits": 3, "h": 2, "n": 4, "n_layers": 2}, epochs=1)
    point = SweepPoint(str(path), 3, 0.0, 0, "noise", board_profile="board-multi")
    (result,) = run_points([point], workers=1)
    assert result["board_profile"] == "board-multi"
    assert result["accuracy"] == result["software_accuracy"]
    assert result["median_abs_error_siemens"] == 0.0


def test_sweep_table_averages_over_models_and_draws():
    def point(model_seed, seed, accuracy, software):
        return {"method": "noise", "bits": 4, "sigma_siemens": 5e-6, "model_seed": model_seed,
                "seed": seed, "accuracy": accuracy, "software_accuracy": software}

    rows = table([point(0, 0, 0.85, 0.90), point(0, 1, 0.87, 0.90),
                  point(1, 0, 0.80, 0.80), point(1, 1, 0.78, 0.80)])
    assert len(rows) == 1
    row = rows[0]
    assert (row["models"], row["seeds"], row["paper_bits"]) == (2, 2, 5)
    assert row["accuracy_mean"] == pytest.approx(0.825)
    assert row["software_accuracy"] == pytest.approx(0.85)
    assert row["points_lost"] == pytest.approx(2.5)


def test_sweep_on_a_local_dask_cluster(tmp_path, monkeypatch):
    """The same points through a Dask distributed scheduler address (a local cluster here)."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "model.pt"
    train_task(TINY, path, model={"bits": 2, "h": 2, "n": 4}, epochs=2)
    points = [SweepPoint(str(path), 2, sigma, 0, "noise") for sigma in (0.0, 30e-6)]
    local = run_points(points, workers=1)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with dask_client(cluster.scheduler_address) as client:
            remote = run_points(points, client=client)
    assert [r["accuracy"] for r in remote] == [r["accuracy"] for r in local]
    assert [r["median_abs_error_siemens"] for r in remote] == [r["median_abs_error_siemens"] for r in local]


def test_tile_cells_leave_out_the_cells_between_kernels(tmp_path, monkeypatch):
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.board import load_board_profile
    from imssa_hw.compiler import compile_checkpoint
    from imssa_hw.workflows.sweep import tile_cells

    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "cache"))
    train_task(TINY, tmp_path / "m.pt", model={"bits": 2, "h": 3, "n": 4}, epochs=1)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    dep = compile_checkpoint(ckpt, load_board_profile("board-default"), parallel=True)
    tiles = tile_cells(dep)
    assert (tiles <= dep.used).all()  # a subset of the cells that matter ...
    assert tiles.sum() == 3 * 5 * 10  # ... exactly three 5x10 kernel tiles ...
    assert dep.used.sum() > tiles.sum()  # ... without the off cells between the kernels
    alone = compile_checkpoint(ckpt, load_board_profile("board-default"))  # one kernel per VMM
    assert np.array_equal(tile_cells(alone), alone.used)


@pytest.mark.parametrize("command,args,message", [
    ("sweep", ["--bits", "2,9"], "--bits must be within 1..8"),
    ("sweep", ["--sigma-us", "0,-5"], "--sigma-us must not be negative"),
    ("sweep", ["--sigma-us", "five"], "--sigma-us must be comma-separated numbers"),
    ("sweep", ["--seed", "0,0"], "--seed must be distinct non-negative integers"),
    ("sweep", ["--seeds", "2"], "No such option '--seeds'"),  # the old name of --draws
    ("sweep", ["--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "0.5"],
     "no Dask scheduler at tcp://127.0.0.1:9"),
    ("demo", ["--emulator-profile", "nosuch"], "emulator profile not found: nosuch"),
    ("demo", ["--set", "device.nosuch=1"], "unknown profile key 'device.nosuch'"),
    ("demo", ["--set", "nodot=1"], "is not of the form section.key=value"),
    ("demo", ["--board-profile", "nosuch"], "board profile not found: nosuch"),
    ("demo", ["--bits", "float"], "--bits must be 1..8 here (a quantized model is deployed)"),
    ("demo", ["--smu", "GPIB::24"], "--smu needs --port"),
    ("demo", ["--port", "arc2://0", "--board-seed", "3"],
     "--board-seed set(s) the emulated board, not --port"),
    ("demo", ["--port", "arc2://x"], "the ArC TWO id after arc2:// must be a number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, command, args, message):
    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, [command, *args, "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_old_sweep_method_name_is_accepted_with_a_warning(tmp_path, cache_env):
    """`--method open_loop` (a programming strategy's name too) is now `noise`, for one version;
    in a process of its own, as a user runs it (the rest of the bad input runs in this one)."""
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "sweep", "--method",
                           "open_loop", "--scheduler", "tcp://127.0.0.1:9",
                           "--scheduler-timeout", "0.5", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env=cache_env)
    lines = done.stderr.strip().splitlines()
    assert lines[0] == ("--method open_loop is now --method noise (the old name goes in the next "
                        "version)")
    assert done.returncode == 2 and "no Dask scheduler" in lines[-1]


def test_the_summary_table_names_what_was_measured():
    """Without fine-tuning the table has no tuned row and its loss is the loss as trained."""
    from imssa_hw.workflows.demo import summary_table

    summary = {"software_accuracy": 0.912, "hardware_accuracy_before_finetune": 0.908,
               "agreement_before_finetune": 0.986, "hardware_accuracy": 0.908,
               "accuracy_loss_points": 0.4, "yield_working": 1.0, "mean_pulses_per_device": 2.35,
               "read_error_before": 0.02, "read_error_after": 0.004, "mode": "onboard",
               "steps_per_s": 2e5, "timings_s": {"program": 37.0}, "total_time_s": 37.0,
               "finetuned": False}
    table = summary_table(summary)
    assert "chip-in-the-loop tuned" not in table
    assert any(line.startswith("loss on hardware (as trained)") and line.endswith(" 0.40 points")
               for line in table.splitlines())
    assert "agreement with software, as trained" in table and "98.60 %" in table
    tuned = summary_table({**summary, "finetuned": True, "hardware_accuracy": 0.9})
    assert "chip-in-the-loop tuned" in tuned and "loss on hardware (tuned)" in tuned
