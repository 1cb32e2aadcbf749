"""Hardware-in-the-loop inference over the emulator: host and on-board loops agree with each
other and with the software model; `imssa-hw infer` end to end and its bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.cli.options import UNCALIBRATED

from imssa_hw.board import load_board_profile
from imssa_hw.compiler import compile_checkpoint, save_deployment
from imssa_hw.compiler.artifact import copy_checkpoint
from imssa_hw.drivers.board import Board
from imssa_hw.hil.inference import load_test_set, run_inference
from imssa_hw.hil.inference_plots import write_inference_outputs
from imssa_hw.model.checkpoint import load_checkpoint
from imssa_hw.programming import program_deployment

from support.boards import FAST_DEVICES, in_process_board
from support.programming import FAST

# No read-chain errors (nothing to calibrate) and no stuck devices (nothing to place around):
# this board isolates the two execution loops. Its devices relax fast, so that programming it
# takes `FAST`'s short waits.
EXACT_BOARD = {"read_chain.tia_gain_sigma": 0, "read_chain.tia_offset_sigma_fs": 0,
               "defects.stuck_on_fraction": 0, "defects.stuck_off_fraction": 0, **FAST_DEVICES}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, tiny_model):
    """The session's small trained 3-bit model compiled for one 16x20 array (two 5x10 kernel
    tiles)."""
    folder = tmp_path_factory.mktemp("infer")
    shutil.copy(tiny_model, folder / "model.pt")
    ckpt = load_checkpoint(folder / "model.pt")
    base = load_board_profile("board-default")
    profile = replace(base, geometry=replace(base.geometry, arrays=1, rows=16, cols=20))
    # Ranges from the test clips themselves: these tests are about the loops, not about
    # choosing ranges (the unseen speaker's states reach 1.5x those of the few training clips)
    dep = compile_checkpoint(ckpt, profile, probe_features=load_test_set(ckpt)[0])
    save_deployment(dep, folder / "deploy")
    copy_checkpoint(folder / "model.pt", folder / "deploy")
    return folder / "deploy", dep, ckpt


@pytest.fixture(scope="module")
def programmed_board(deployment, tmp_path_factory):
    """An emulated board (`emu://`, its state in a file: a command in another process opens
    the same board) with the deployment programmed on it."""
    _, dep, _ = deployment
    emu = in_process_board(tmp_path_factory.mktemp("board"), arrays=1, rows=16, cols=20, seed=2,
                           settings=EXACT_BOARD)
    with Board.open(emu.port) as board:
        result = program_deployment(board, dep, settings=FAST)
    assert result.report["yield_working"] > 0.99
    return emu


@pytest.mark.slow
def test_host_and_onboard_loops_agree(deployment, programmed_board, tmp_path):
    _, dep, ckpt = deployment
    features, labels, names = load_test_set(ckpt)
    with Board.open(programmed_board.port) as board:
        host = run_inference(board, dep, ckpt, features, labels, "host")
        frames = board.frames_sent
        onboard = run_inference(board, dep, ckpt, features, labels, "onboard")
        onboard_frames = board.frames_sent - frames
    steps = features.shape[1] + 1
    assert host.frames >= len(labels) * steps  # one VMM per step per array
    assert onboard_frames < 10  # the whole test set in a few frames
    scale = np.abs(host.software_logits).max()
    assert np.abs(host.hardware_logits - onboard.hardware_logits).max() < 0.05 * scale
    for result in (host, onboard):
        assert np.abs(result.hardware_logits - result.software_logits).max() < 0.1 * scale
        y_hw, y_sw = result.traces["hardware_y"], result.traces["software_y"]
        assert np.abs(y_hw - y_sw).max() < 0.1 * np.abs(y_sw).max()
    report = onboard.report(2)
    assert set(report) >= {"hardware_accuracy", "software_accuracy", "agreement", "confusion",
                           "steps_per_s", "mode"}
    assert np.array(report["confusion"]).sum() == len(labels)
    # what `infer` writes: the PNGs, then with --no-plots none, and not the last run's
    pngs = [tmp_path / "confusion-onboard.png", tmp_path / "traces-onboard.png"]
    assert write_inference_outputs(onboard, report, names, tmp_path, None) == pngs
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    written = write_inference_outputs(onboard, report, names, tmp_path, tmp_path / "r.json",
                                      plots=False)
    assert written == [tmp_path / "r.json"] and not any(p.exists() for p in pngs)


def test_infer_command_end_to_end(deployment, programmed_board, tmp_path):
    deploy_dir, _, _ = deployment
    report = tmp_path / "infer.json"
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "infer", str(deploy_dir),
                           "--port", programmed_board.port, "--mode", "onboard", "--report",
                           str(report), "--out", str(tmp_path / "plots")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["mode"] == "onboard" and data["n_samples"] == 12
    # no --calibration: one line on stderr and in the report
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [f"warning: {UNCALIBRATED}"]
    assert data["calibrated"] is False and data["warnings"] == [UNCALIBRATED]
    assert (tmp_path / "plots" / "confusion-onboard.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "traces-onboard.png").stat().st_size > 1000
    assert "hardware" in done.stdout


@pytest.mark.parametrize("args,message", [
    (["/nonexistent/deploy"], "not a deploy directory"),
    (["DEPLOY", "--mode", "sideways"], "Invalid value for '--mode'"),
])
def test_infer_bad_input(deployment, programmed_board, args, message):
    deploy_dir, _, _ = deployment
    args = [str(deploy_dir) if a == "DEPLOY" else a for a in args]
    done = CliRunner().invoke(cli, ["infer", *args, "--port", programmed_board.port])
    assert done.exit_code == 2 and isinstance(done.exception, SystemExit)
    assert message in done.output and len(done.output.strip().splitlines()) == 1


def test_infer_refuses_a_port_that_is_not_a_board(deployment, tmp_path):
    deploy_dir, _, _ = deployment
    done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "infer", str(deploy_dir),
                           "--port", str(tmp_path / "no-such-port")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_measured_responses_reproduce_the_executor(deployment):
    """Fine-tuning's hardware model (impulse responses on read-back maps) computes what the
    executor computes on those maps."""
    import torch

    from imssa_hw.model import reference
    from imssa_hw.compiler import Executor
    from imssa_hw.hil.finetune import measured_model

    _, dep, ckpt = deployment
    features, _, _ = load_test_set(ckpt)
    rng = np.random.default_rng(0)
    targets = dep.targets_siemens
    maps = np.maximum(targets + rng.normal(0, 15e-6, targets.shape) * dep.used, 0)
    expected = reference.forward(ckpt, features, recurrence=Executor.on_maps(dep.schedule, maps))
    model = measured_model(ckpt, dep, maps, features.shape[1])
    with torch.no_grad():
        got = model(torch.from_numpy(features)).numpy()
    ideal = reference.forward(ckpt, features)
    moved, missed = np.abs(expected - ideal).max(), np.abs(got - expected).max()
    assert moved > 1e-4 * np.abs(expected).max()  # the noise moves the logits, far beyond float
    assert missed < 1e-3 * moved  # rounding, and the measured model captures that to 0.1 %


def test_finetuning_trains_the_digital_parts_around_measured_kernels(deployment, monkeypatch):
    """`finetune` on read-back maps: it runs (its measured layers have no analog loop for the
    trainer to look at), on one torch thread, fits the training split at least as well as
    before, and leaves the deployed kernels as they were."""
    import torch

    from imssa_hw.hil import finetune as module

    _, dep, ckpt = deployment
    features, labels, _ = load_test_set(ckpt)
    targets = dep.targets_siemens
    maps = targets + np.random.default_rng(2).uniform(0, 5e-6, targets.shape) * dep.used
    threads, seen = torch.get_num_threads(), []
    train = module.train_digital
    monkeypatch.setattr(module, "train_digital",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or train(*a, **k))
    torch.set_num_threads(2)  # as where torch has the cores (the tests run it on one: conftest)
    try:
        result = module.finetune(ckpt, dep, maps, features, labels, epochs=3)
        assert seen == [1] and torch.get_num_threads() == 2  # one thread, as many after
    finally:
        torch.set_num_threads(threads)
    assert result.accuracy_before <= result.accuracy_after
    kernels = [name for name in ckpt.tensors if name.startswith("kernels.")]
    assert kernels and all(np.array_equal(result.checkpoint_tensors[name], ckpt.tensors[name])
                           for name in kernels)
    assert any(not np.array_equal(result.checkpoint_tensors[name], ckpt.tensors[name])
               for name in ckpt.tensors if name.startswith("decoder."))


def test_finetuning_keeps_the_state_best_on_the_validation_part(deployment):
    """With a validation part, the state kept is the epoch (the untuned model included) that
    classifies it best, the earliest of ties; the returned tensors are that state."""
    from imssa_hw.hil.finetune import finetune, measured_model
    from imssa_hw.model.checkpoint import Checkpoint
    from imssa_hw.training.trainer import accuracy

    _, dep, ckpt = deployment
    features, labels, _ = load_test_set(ckpt)
    targets = dep.targets_siemens
    maps = targets + np.random.default_rng(2).uniform(0, 5e-6, targets.shape) * dep.used
    order = np.random.default_rng(0).permutation(len(labels))
    split = (order[len(order) // 3:], order[:len(order) // 3])
    result = finetune(ckpt, dep, maps, features, labels, epochs=4, split=split)
    scores = result.validation_accuracy
    assert len(scores) == 5 and result.epoch_kept == int(np.argmax(scores))
    kept = replace(ckpt, tensors=result.checkpoint_tensors)
    assert isinstance(kept, Checkpoint)
    model = measured_model(kept, dep, maps, features.shape[1])
    assert accuracy(model, features[split[1]], labels[split[1]]) == scores[result.epoch_kept]


def test_off_cells_leak_the_next_input_into_the_outputs_only_when_programmed(deployment):
    """The lead tap: input rows cross the output columns at off cells, read one step late."""
    from imssa_hw.hil.finetune import impulse_responses

    _, dep, _ = deployment
    _, lead_ideal = impulse_responses(dep, dep.targets_siemens, 0, 8, 0.05)
    rng = np.random.default_rng(1)  # every used cell off by up to 5 uS, off cells included
    maps = dep.targets_siemens + rng.uniform(0, 5e-6, dep.targets_siemens.shape) * dep.used
    kernel, lead = impulse_responses(dep, maps, 0, 8, 0.05)
    assert np.abs(lead_ideal).max() < 1e-9 * np.abs(kernel).max()
    assert np.abs(lead).max() > 1e-3 * np.abs(kernel).max()


def test_a_response_without_cross_talk_runs_per_channel_as_the_full_convolution_does():
    """Kernels that run alone (no channel responds to another) take the per-channel path,
    which gives what the H x H convolution gives; cross-talk keeps the full one."""
    import torch

    from imssa_hw.hil.finetune import MeasuredSSM

    rng = np.random.default_rng(3)
    h, length = 5, 12
    kernel = np.zeros((length, h, h))
    kernel[:, np.arange(h), np.arange(h)] = rng.standard_normal((length, h))
    lead = np.diag(rng.standard_normal(h))
    d = torch.as_tensor(rng.standard_normal(h), dtype=torch.float32)
    u = torch.as_tensor(rng.standard_normal((3, h, length)), dtype=torch.float32)
    alone = MeasuredSSM(kernel, lead, d)
    crossed = kernel.copy()
    crossed[:, 0, 1] = 1e-3
    full = MeasuredSSM(crossed, lead, d)
    assert alone.per_channel and not full.per_channel
    with torch.no_grad():
        full.kernel[:, 0, 1] = 0.0  # the same response, through the H x H path
        np.testing.assert_allclose(alone(u).numpy(), full(u).numpy(), atol=1e-5)


def test_the_report_gives_the_margins_of_the_recordings_that_flip():
    from imssa_hw.hil.inference import InferenceResult

    software = np.array([[2.0, 0.0], [0.1, 0.0], [0.0, 0.5], [0.0, 3.0]])
    hardware = np.array([[1.9, 0.0], [0.0, 0.2], [0.4, 0.0], [0.0, 3.0]])
    result = InferenceResult("onboard", np.array([0, 0, 1, 1]), hardware, software, 1.0, 4, 1)
    report = result.report(2)
    assert report["agreement"] == 0.5
    np.testing.assert_allclose(report["disagreement_margins"], [0.1, 0.5])
    np.testing.assert_allclose(report["rms_logit_error"],
                               np.sqrt(np.mean((hardware - software) ** 2)))
