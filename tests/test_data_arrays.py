"""Sequences in an .npz (`--dataset arrays`) and the shipped UCI digits (`--dataset uci-digits`):
what is read, what is refused in one line, and that nothing in a file is executed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support.boards import deploy_and_infer
from support.models import Payload

from imssa_hw.cli.main import cli
from imssa_hw.data import AugmentSpec, DataSpec, load_data
from imssa_hw.data.arrays import UCI_DIGITS, read_sequences
from imssa_hw.errors import BadInput


def write_npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.normal(size=(12, 5, 3)), "y_train": np.arange(12) % 3,
            "x_test": rng.normal(size=(6, 5, 3)), "y_test": np.arange(6) % 3}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_the_shipped_digits_are_eight_rows_of_eight_pixels_in_ten_classes():
    seqs = read_sequences(UCI_DIGITS)
    assert seqs.x_train.shape == (1347, 8, 8) and seqs.x_test.shape == (450, 8, 8)
    assert seqs.class_names == [str(d) for d in range(10)]
    assert np.bincount(seqs.y_test).min() >= 43  # stratified: 25 % of every class
    assert seqs.x_train.dtype == np.float32 and seqs.x_train.max() == 16


def test_load_data_normalizes_with_the_training_split_and_caps_per_class():
    data = load_data(DataSpec.default("custom", n_train_per_class=5, classes=[3, 7]))
    assert data.classes == [3, 7] and data.class_names == ["3", "7"]
    assert data.x_train.shape == (10, 8, 8) and sorted(set(data.y_train.tolist())) == [0, 1]
    flat = data.x_train.reshape(-1, 8)
    assert np.allclose(flat.mean(0), 0, atol=1e-5)
    again = load_data(DataSpec.default("custom", n_train_per_class=5, classes=[3, 7]))
    assert np.array_equal(data.x_train, again.x_train)  # the cap's choice is seeded


def test_a_user_file_sets_the_width_and_takes_2d_sequences_and_class_names(tmp_path):
    path = write_npz(tmp_path / "d.npz", x_train=np.ones((4, 7)), y_train=np.array([0, 1, 0, 1]),
                     x_test=np.ones((2, 7)), y_test=np.array([1, 0]),
                     class_names=np.array(["rest", "walk"]))
    data = load_data(DataSpec(task="custom", dataset="arrays", data_root=str(path)))
    assert data.x_train.shape == (4, 7, 1) and data.class_names == ["rest", "walk"]
    spec = DataSpec.from_dict(DataSpec(task="custom", dataset="arrays",
                                       data_root=str(path)).to_dict())
    assert spec.dataset == "arrays" and spec.root == path


@pytest.mark.parametrize("arrays, says", [
    ({"y_test": None}, "no y_test"),
    ({"x_test": np.ones((6, 4, 3))}, "must be the same"),
    ({"x_train": np.full((12, 5, 3), np.nan)}, "not finite"),
    ({"y_train": np.arange(12) * 0.5}, "integer class indices"),
    ({"y_train": np.arange(12) % 2, "y_test": np.arange(6) % 3}, "no training sample of class 2"),
    ({"class_names": np.array(["a", "b"])}, "only 2 class_names"),
    ({"extra": np.ones(3)}, "unknown arrays extra"),
])
def test_a_file_that_does_not_fit_is_refused_naming_it(tmp_path, arrays, says):
    path = write_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(BadInput, match=says) as info:
        read_sequences(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_pickled_object_in_the_file_is_refused_and_never_runs(tmp_path):
    ran = tmp_path / "ran"
    path = write_npz(tmp_path / "d.npz", class_names=np.array([Payload(ran)], dtype=object))
    with pytest.raises(BadInput, match="without executing code"):
        read_sequences(path)
    assert not ran.exists()


def test_specs_that_mix_speech_and_sequences_are_refused():
    with pytest.raises(BadInput, match="do not go together"):
        DataSpec(task="zero-one", dataset="uci-digits")
    with pytest.raises(BadInput, match="needs a data root"):
        DataSpec(task="custom", dataset="arrays")
    with pytest.raises(BadInput, match="apply to the speech tasks' data"):
        DataSpec(task="custom", dataset="uci-digits", mix_flite=True)
    with pytest.raises(BadInput, match="perturbed copies are of audio"):
        DataSpec(task="custom", dataset="uci-digits", augment=AugmentSpec(copies=1))


def test_train_refuses_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = CliRunner().invoke(cli, ["train", "--dataset", "arrays", "--data-root", str(bad),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    last = result.output.splitlines()[-1]  # after the progress bars' labels
    assert last.startswith("Error: ") and "bad.npz" in last and "Traceback" not in result.output
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.slow
def test_a_model_trained_on_arrays_runs_on_an_emulated_board_reading_the_same_data(tmp_path):
    """train on a user's .npz, then calibrate, compile, program and infer on an emulated board:
    infer reads the test split again from the checkpoint's data spec."""
    import imssa_hw as hw

    seqs = read_sequences(UCI_DIGITS)
    keep = np.isin(seqs.y_train, [0, 1, 7]), np.isin(seqs.y_test, [0, 1, 7])
    data = write_npz(tmp_path / "three.npz", x_train=seqs.x_train[keep[0]][:, :, :4],
                     y_train=np.searchsorted([0, 1, 7], seqs.y_train[keep[0]]),
                     x_test=seqs.x_test[keep[1]][:, :, :4],
                     y_test=np.searchsorted([0, 1, 7], seqs.y_test[keep[1]]),
                     class_names=np.array(["zero", "one", "seven"]))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--dataset", "arrays", "--data-root", str(data),
                                      "--bits", "3", "--h", "4", "--n", "4", "--layers", "1",
                                      "--epochs", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = hw.load_model(out)
    assert model.config.d_input == 4 and model.meta["class_names"] == ["zero", "one", "seven"]
    inferred = deploy_and_infer(model, seed=2)
    assert inferred.software_accuracy == pytest.approx(model.meta["software_accuracy"])
    assert inferred.agreement >= 0.95
