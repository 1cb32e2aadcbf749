"""`imssa-hw train` end to end on a tiny configuration, and its bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.data import DataSpec, apply_normalization, compute_features
from imssa_hw.data.heidelberg import load_audio, read_list
from imssa_hw.data.tasks import FSDD_ROOT
from imssa_hw.hil.inference import load_test_set
from imssa_hw.model.checkpoint import load_checkpoint


def imssa_hw(*args: str, env_cache) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", *args], capture_output=True,
                          text=True, timeout=300, env=env_cache)


@pytest.fixture
def env_cache(tmp_path_factory, monkeypatch):
    import os
    env = dict(os.environ)
    env["IMSSA_HW_CACHE"] = str(tmp_path_factory.getbasetemp() / "data-cache")
    return env


@pytest.mark.slow
def test_train_tiny_end_to_end(tmp_path, env_cache):
    out, report = tmp_path / "run", tmp_path / "train.json"
    done = imssa_hw("train", "--task", "zero-one", "--dataset", "synthetic", "--bits", "2",
                    "--epochs", "3", "--h", "4", "--n", "4", "--n-train-per-class", "12", "--n-test-per-class", "6",
                    "--seed", "3", "--ranges", "shared", "--a-range", "0.9", "--out", str(out),
                    "--report", str(report), env_cache=env_cache)
    assert done.returncode == 0, done.stderr
    assert "software accuracy" in done.stdout
    result = json.loads(report.read_text())
    for key in ("task", "classes", "bits", "software_accuracy", "float_accuracy", "n_train",
                "n_test", "epochs", "wall_time_s"):
        assert key in result, key
    assert result["task"] == "zero-one" and result["bits"] == 2 and result["classes"] == [0, 1]
    assert result["n_train"] == 24 and result["n_test"] == 12 and result["epochs"] == 3
    counts = np.array(result["test_confusion"])  # [true][predicted] of the model kept
    assert counts.shape == (2, 2) and counts.sum() == 12 and counts.sum(axis=1).tolist() == [6, 6]
    assert np.trace(counts) / 12 == pytest.approx(result["software_accuracy"])
    assert [c["count"] for c in result["worst_confusions"]] == sorted(
        (int(counts[t, p]) for t, p in ((0, 1), (1, 0)) if counts[t, p]), reverse=True)
    assert ("most confused: " in done.stdout) == bool(result["worst_confusions"])
    assert f"wrote {out / 'model.pt'}" in done.stdout and result["checkpoint"] == str(out / "model.pt")
    ckpt = load_checkpoint(out)  # the folder: its model.pt
    assert ckpt.config.bits == 2 and ckpt.config.h == 4
    assert ckpt.config.ranges == "shared" and ckpt.config.a_range == 0.9
    levels = ckpt.kernels(0)
    assert levels.b_step.tolist() == levels.c_step.tolist() == levels.a_step.tolist()
    assert ckpt.meta["classes"] == [0, 1] and ckpt.meta["features"]["kind"]
    assert len(ckpt.meta["signal_ranges"]) == 1 and len(ckpt.meta["signal_ranges"][0]["x_max"]) == 4
    assert ckpt.kernels(0).a_re.shape == (4, 2)


@pytest.mark.slow(seconds=1)
def test_train_on_a_few_real_clips_and_infer_the_same_features(tmp_path, env_cache):
    """Real recordings of an unseen speaker; the checkpoint keeps the data spec, and the test set
    loaded again for inference has exactly the features of the recordings. In the test process
    (the test above runs the real one): a new process would import torch and scipy.signal again."""
    out, report = tmp_path / "run", tmp_path / "train.json"
    done = CliRunner().invoke(cli, [
        "train", "--task", "zero-one", "--dataset", "fsdd", "--test-speakers", "2", "--bits", "1",
        "--epochs", "2", "--h", "4", "--n-train-per-class", "4", "--n-test-per-class", "3",
        "--augment-copies", "1", "--no-mix-synthetic", "--no-mix-flite", "--out", str(out),
        "--report", str(report)], env={"IMSSA_HW_CACHE": env_cache["IMSSA_HW_CACHE"]})
    assert done.exit_code == 0, done.output
    result = json.loads(report.read_text())
    assert result["dataset"] == "fsdd" and result["speakers_test"] == [2]
    assert result["n_train"] == 16 and result["n_test"] == 6
    ckpt = load_checkpoint(out / "model.pt")
    spec = DataSpec.of_checkpoint(ckpt.meta)
    assert spec.test_speakers == (2,) and spec.augment.copies == 1 and spec.mix_synthetic == 0
    assert not spec.mix_flite
    features, labels, names = load_test_set(ckpt)
    assert names == ["zero", "one"] and len(labels) == 6
    files = [f for f in read_list(FSDD_ROOT, "train") if f.speaker == 2 and f.digit < 2]
    expected = [apply_normalization(compute_features(*load_audio(f.path), spec.features),
                                    ckpt.meta["normalization"]) for f in files]
    assert all(any(np.allclose(e, row, atol=1e-5) for e in expected) for row in features)


@pytest.mark.parametrize("args,message", [
    (["--task", "nine"], "Invalid value for '--task'"),
    (["--bits", "9"], "--bits must be 1..8"),
    (["--bits", "two"], "--bits must be 1..8"),
    (["--dataset", "hd", "--data-root", "/nonexistent/hd"], "/nonexistent/hd"),
    (["--classes", "0,x"], "--classes"),
    (["--n", "5"], "--n must be even"),
    (["--ranges", "own"], "Invalid value for '--ranges'"),
    (["--a-range", "1.5"], "Invalid value for '--a-range'"),
    (["--test-speakers", "9"], "test speaker [9] not in"),
    (["--test-speakers", "x"], "--test-speakers must be comma-separated"),
    (["--dataset", "synthetic", "--test-speakers", "1"], "real recordings"),
    (["--dataset", "hd"], "needs a data root"),
    (["--dataset", "fsdd", "--data-root", "/tmp"], "a data root is for datasets hd, arrays, folder"),
    (["--board-profile", "nosuch"], "board profile not found: nosuch"),
    (["--out", "m.pt"], "m.pt is a file name, but --out is the folder this command writes "
                        "model.pt into"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, env_cache, args, message, monkeypatch):
    """In-process (the command group's error handling is what turns errors into one line; the
    end-to-end tests above run the real process)."""
    monkeypatch.chdir(tmp_path)  # relative paths (m.pt) name nothing that is there already
    done = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run"), *args],
                              env={"IMSSA_HW_CACHE": env_cache["IMSSA_HW_CACHE"]})
    assert done.exit_code == 2, done.output
    assert message in done.stderr
    assert isinstance(done.exception, SystemExit), done.exception  # no other exception escaped
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.pt").exists()
