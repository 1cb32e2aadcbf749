"""`imssa-hw import`: a model of the S4D reference layout (tests/support/reference_s4d.py, trained
a little here) maps exactly onto our classifier, its quantized checkpoint computes what the
host-side numpy model computes, and what does not map is refused in one line naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from support.boards import deploy_and_infer
from support.models import Payload
from support.reference_s4d import ReferenceModel, train_reference

from imssa_hw.board import load_board_profile
from imssa_hw.cli.main import cli
from imssa_hw.data import DataSpec, load_data
from imssa_hw.data.arrays import UCI_DIGITS, read_sequences
from imssa_hw.errors import BadInput
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import load_checkpoint
from imssa_hw.model.config import ModelConfig
from imssa_hw.training.importer import (import_reference, parse_reference, read_state_dict,
                                        to_classifier)
from imssa_hw.training.trainer import set_quantized

SPEC = DataSpec(task="custom", dataset="uci-digits", n_train_per_class=30, n_test_per_class=10)
SHAPE = {"h": 4, "n": 4, "n_layers": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, ReferenceModel]:
    """A reference-layout model trained a little on the raw digits (seeded), saved as
    torch.save(model.state_dict()) writes it."""
    seqs = read_sequences(UCI_DIGITS)
    torch.manual_seed(0)
    model = ReferenceModel(8, 10, dt_min=0.01, dt_max=0.5, **SHAPE)
    train_reference(model, seqs.x_train[:300], seqs.y_train[:300], epochs=3, seed=0)
    path = tmp_path_factory.mktemp("reference") / "model.pt"
    torch.save(model.state_dict(), path)
    return path, model


def ours(path: Path, a_range: float = 1.0, bits: int | None = 4):
    data = load_data(SPEC)
    ref = parse_reference(read_state_dict(path))
    cfg = ModelConfig(d_input=8, n_classes=10, bits=bits, a_range=a_range, **SHAPE)
    return to_classifier(ref, cfg, data.normalization), data


def raw_test_features() -> np.ndarray:
    """The test split as the reference model saw it: raw pixels."""
    data = load_data(SPEC)
    mean, std = (np.asarray(data.normalization[k], np.float32) for k in ("mean", "std"))
    return data.x_test * std + mean


@pytest.mark.parametrize("a_range", [1.0, 0.995])
def test_the_float_model_maps_exactly_in_both_modes(trained, a_range):
    path, model = trained
    with torch.no_grad():
        expected = model(torch.from_numpy(raw_test_features())).numpy()
    mapped, data = ours(path, a_range)
    set_quantized(mapped, False)
    with torch.no_grad():
        for recurrent in (False, True):
            got = mapped(torch.from_numpy(data.x_test), recurrent=recurrent).numpy()
            assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()


def test_a_pole_outside_the_range_is_refused_naming_it(trained):
    with pytest.raises(BadInput, match=r"layer 0 kernel \d+ mode \d+: a pole .* outside "
                                       r"--a-range 0.5"):
        ours(trained[0], a_range=0.5)


def test_the_checkpoint_holds_the_quantized_model_the_host_runs(trained, tmp_path):
    out = tmp_path / "model.pt"
    summary = import_reference(trained[0], SPEC, out, bits=4,
                               board=load_board_profile("board-default"))
    ckpt = load_checkpoint(out)
    data = load_data(SPEC)
    host = reference.forward(ckpt, data.x_test).argmax(-1)
    assert summary["software_accuracy"] == pytest.approx(np.mean(host == data.y_test))
    info = summary["import"]
    assert info["ptq_accuracy"] == summary["software_accuracy"] and info["finetune_epochs"] == 0
    assert ckpt.meta["data_spec"]["dataset"] == "uci-digits" and "loop_scales" in ckpt.meta
    mapped, _ = ours(trained[0])
    set_quantized(mapped, False)
    with torch.no_grad():
        float_pred = mapped(torch.from_numpy(data.x_test)).argmax(-1).numpy()
    assert info["float_accuracy"] == pytest.approx(np.mean(float_pred == data.y_test))


def edited(trained, tmp_path: Path, change) -> Path:
    state = {k: v.clone() for k, v in trained[1].state_dict().items()}
    change(state)
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("change, says", [
    (lambda s: s.update({"s4_layers.1.kernel.P": torch.zeros(1, 4, 2, 2)}),
     r"s4_layers.1.kernel.P: a non-diagonal"),
    (lambda s: s.update({"s4_layers.0.kernel.C": s["s4_layers.0.kernel.C"].repeat(2, 1, 1, 1)}),
     r"s4_layers.0.kernel.C has shape .*: a bidirectional kernel"),
    (lambda s: s.update({"s4_layers.1.weight_ih_l0": torch.zeros(16, 4)}),
     r"s4_layers.1.weight_ih_l0: layer 1 is not a reference S4D layer"),
    (lambda s: s.update({"s4_layers.0.kernel.inv_dt": torch.zeros(4)}),
     r"s4_layers.0.kernel.inv_dt: not a parameter of the reference S4DKernel"),
    (lambda s: s.update({"pool.weight": torch.zeros(4)}), r"pool.weight: not part of"),
    (lambda s: s.pop("norms.1.bias"), r"no norms.1.bias in the state dict"),
    (lambda s: s.update({"s4_layers.0.output_linear.0.weight": torch.zeros(4, 4, 1)}),
     r"output_linear.0.weight has shape .*Conv1d\(4, 8, 1\) \+ GLU"),
    (lambda s: s.update({"encoder.weight": torch.zeros(4, 3)}),
     r"takes 3 features per step, the data 8"),
])
def test_what_does_not_map_is_refused_in_one_line_naming_it(trained, tmp_path, change, says):
    path = edited(trained, tmp_path, change)
    with pytest.raises(BadInput, match=says) as info:
        import_reference(path, SPEC, tmp_path / "out" / "model.pt", bits=4)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_file_that_would_run_code_is_refused_and_never_runs(tmp_path):
    ran, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"encoder.weight": Payload(ran)}, path)
    with pytest.raises(BadInput, match="without executing code"):
        read_state_dict(path)
    assert not ran.exists()


def test_a_file_that_is_no_saved_state_dict_is_refused_in_one_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(BadInput, match="not what torch.save writes"):
        read_state_dict(junk)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(BadInput, match="holds list, not a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_the_command_imports_fine_tunes_and_reports(trained, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["import", str(trained[0]), "--dataset", "uci-digits",
                                      "--classes", "0,1,2,3,4,5,6,7,8,9", "--finetune-epochs",
                                      "1", "--no-hardware-aware", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "float" in result.output and "4-bit post-training" in result.output
    assert "fine-tuned 1 epochs" in result.output
    ckpt = load_checkpoint(out)
    assert ckpt.meta["import"]["finetune_epochs"] == 1 and ckpt.config.bits == 4


def test_the_command_refuses_a_pre_norm_model_in_one_line(trained, tmp_path):
    result = CliRunner().invoke(cli, ["import", str(trained[0]), "--dataset", "uci-digits",
                                      "--prenorm", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.startswith("Error: a pre-norm model") and result.output.count("\n") == 1


@pytest.mark.slow
def test_an_imported_model_runs_on_an_emulated_board_as_in_software(trained, tmp_path):
    import imssa_hw as hw

    out = tmp_path / "imported" / "model.pt"
    import_reference(trained[0], SPEC, out, bits=4, board=load_board_profile("board-default"))
    model = hw.load_model(out)
    inferred = deploy_and_infer(model, seed=3)
    assert inferred.software_accuracy == pytest.approx(model.meta["software_accuracy"])
    assert inferred.agreement >= 0.95
