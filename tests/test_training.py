"""Training pieces: SpecAugment masks, and validation on the indices the data layer gives."""

from __future__ import annotations

import numpy as np
import torch

from imssa_hw.model.config import ModelConfig
from imssa_hw.model.config import TrainConfig
from imssa_hw.training.trainer import spec_masks, train


def test_spec_masks_zero_spans_of_frames_and_features_per_sample():
    x = torch.ones(64, 32, 16)
    masked = spec_masks(x, time_masks=2, freq_masks=2, fraction=0.125, rng=np.random.default_rng(0))
    zero = masked == 0
    frames_hit = zero.all(dim=2).sum(dim=1)  # whole frames zeroed, per sample
    features_hit = zero.all(dim=1).sum(dim=1)  # whole features zeroed, per sample
    assert frames_hit.max() <= 2 * 4 and features_hit.max() <= 2 * 2
    assert frames_hit.sum() > 0 and features_hit.sum() > 0
    assert not torch.equal(zero[0], zero[1])  # independent per sample
    assert ((masked == 0) | (masked == 1)).all()
    assert torch.equal(spec_masks(x, 0, 0, 0.125, np.random.default_rng(0)), x)


def test_validation_uses_the_given_split_only():
    """Fit on class 0 only, validate on class 1 only: every epoch scores 0 on validation, which
    a random split (mostly class 0) would not."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 3)).astype(np.float32)
    y = np.zeros(40, np.int64)
    y[36:] = 1
    cfg = ModelConfig(d_input=3, n_classes=2, h=4, n=2, bits=None)
    split = (np.arange(0, 36), np.arange(36, 40))
    result = train(x, y, x[:2], y[:2], cfg, TrainConfig(epochs=3, seed=1), split=split)
    assert [r["val_accuracy"] for r in result.history] == [0.0, 0.0, 0.0]
