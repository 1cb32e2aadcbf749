"""Checkpoints round-trip, the numpy twin matches torch, tampered or foreign files are refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from imssa_hw.errors import BadInput
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import load_checkpoint
from imssa_hw.model.config import ModelConfig
from imssa_hw.training.classifier import S4DClassifier, model_from_checkpoint, save_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return S4DClassifier(ModelConfig(d_input=5, n_classes=3, h=6, n=4, n_layers=2, bits=3)).eval()


def test_round_trip_and_numpy_twin(model, tmp_path):
    path = tmp_path / "m.pt"
    digest = save_model(path, model, {"task": "zero-one", "classes": [0, 1, 2]})
    ckpt = load_checkpoint(path)
    assert ckpt.digest == digest and ckpt.meta["task"] == "zero-one"
    assert ckpt.config == model.cfg
    x = torch.randn(4, 25, 5)
    with torch.no_grad():
        expected = model(x).numpy()
        rebuilt = model_from_checkpoint(ckpt)(x).numpy()
    assert np.array_equal(expected, rebuilt)
    assert np.allclose(reference.forward(ckpt, x.numpy()), expected, atol=1e-5)
    kernels = ckpt.kernels(1)
    assert kernels.a_re.dtype == np.int16 and kernels.a_step.shape == (6,)


def test_a_modified_byte_is_refused(model, tmp_path):
    path = tmp_path / "m.pt"
    save_model(path, model, {})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="digest"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/imssa-hw-pwned", "w"))


def test_a_pickle_is_refused_without_running_it(tmp_path):
    marker = "/tmp/imssa-hw-pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weights": _Payload()}))
    with pytest.raises(BadInput, match="not an imssa-hw checkpoint"):
        load_checkpoint(path)
    assert not os.path.exists(marker)


def test_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"w": torch.zeros(3)}, path)
    with pytest.raises(BadInput, match="not an imssa-hw checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
