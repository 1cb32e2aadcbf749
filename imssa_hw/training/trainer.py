"""Training: float warm-up, then quantization-aware training with the fixed dynamic range.

The float phase gives `float_accuracy` (the same network before its kernels are quantized);
the QAT phase fine-tunes with quantized Abar, Bbar and C in the forward pass and the
straight-through estimator in the backward pass. The epoch kept is the one with the best
accuracy on a validation part of the training split; the test split is only reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from imssa_hw.board.profile import BoardProfile
from imssa_hw.data.labels import confusion, worst_confusions
from imssa_hw.errors import BadInput
from imssa_hw.model.config import HARDWARE_FRACTION, ModelConfig, TrainConfig
from imssa_hw.training import hardware_aware
from imssa_hw.training.classifier import S4DClassifier
from imssa_hw.training.one_cycle import OneCycleAdamW

if TYPE_CHECKING:
    from imssa_hw.data import DataSpec, TaskData
    from imssa_hw.model.loop_scales import LayerScales


@dataclass
class TrainResult:
    """The trained model (best validation epoch of the last phase) and what was measured."""

    model: S4DClassifier
    software_accuracy: float
    test_predictions: np.ndarray
    """The class index the model picks for each test sample."""
    float_accuracy: float | None  # None when there was no float phase (a 1-epoch QAT run)
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    loop_accuracy: float | None = None
    """Test accuracy through the board's simulated loop at `loop_scales` (hardware-aware
    training only)."""
    loop_scales: list[LayerScales] | None = None
    """The board's loop scales for the model kept, state gains fitted
    (`hardware_aware.fit_state_gains`): what `save_model` stores (None: it measures them)."""


def set_quantized(model: S4DClassifier, on: bool) -> None:
    """Switch the kernels between float and their quantized values (the config's bits)."""
    for block in model.blocks:
        block.ssm.bits = model.cfg.bits if on else None


@torch.no_grad()
def predictions(model: S4DClassifier, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The class index the model picks for each sample (eval mode)."""
    was_training = model.training
    model.eval()
    pred = [model(torch.from_numpy(x[i:i + batch_size])).argmax(-1).numpy()
            for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return np.concatenate(pred) if pred else np.zeros(0, np.int64)


def score(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of predictions equal to the labels (nan when there are none)."""
    return float(np.mean(pred == y)) if len(y) else float("nan")


def accuracy(model: S4DClassifier, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of samples classified correctly (eval mode)."""
    return score(predictions(model, x, batch_size), y)


def accuracy_through_loop(model: S4DClassifier, board: BoardProfile, scales: list[LayerScales],
                          x: np.ndarray, y: np.ndarray) -> float:
    """`accuracy` with every S4D layer run through `board`'s simulated loop at `scales`."""
    hardware_aware.install(model, board, scales)
    try:
        return accuracy(model, x, y)
    finally:
        hardware_aware.install(model, board, None)


def spec_masks(x: torch.Tensor, time_masks: int, freq_masks: int, fraction: float,
               rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment: zero (the normalized mean) random spans of frames and of features, each
    up to `fraction` of the axis, independently per sample of the batch (B, L, F)."""
    batch, length, width = x.shape
    keep = torch.ones_like(x)
    for count, axis_len, axis in ((time_masks, length, 1), (freq_masks, width, 2)):
        span = max(1, int(fraction * axis_len))
        for _ in range(count):
            widths = rng.integers(0, span + 1, batch)
            starts = rng.integers(0, axis_len, batch)
            pos = np.arange(axis_len)
            hit = (pos >= starts[:, None]) & (pos < (starts + widths)[:, None])
            shape = (batch, axis_len, 1) if axis == 1 else (batch, 1, axis_len)
            keep = keep * torch.from_numpy(~hit).reshape(shape).to(x.dtype)
    return x * keep


def _run_epoch(model: nn.Module, xt: torch.Tensor, yt: torch.Tensor, optimizer: OneCycleAdamW,
               cfg: TrainConfig, rng: np.random.Generator) -> float:
    """One pass over the data in random batches; returns the mean loss."""
    model.train()
    order = torch.from_numpy(rng.permutation(len(yt)))
    total = 0.0
    batch_size = cfg.batch_size
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        xb = xt[idx]
        if cfg.time_masks or cfg.freq_masks:
            xb = spec_masks(xb, cfg.time_masks, cfg.freq_masks, cfg.mask_fraction, rng)
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yt[idx])
        if cfg.loop_consistency and hardware_aware.installed(model):
            with hardware_aware.bypassed(model):
                ideal = model(xb)
            loss = (loss + nn.functional.cross_entropy(ideal, yt[idx])
                    + cfg.loop_consistency * (logits - ideal).square().mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(yt)


def train_digital(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig,
                  after_epoch: Callable[[int], None] | None = None) -> None:
    """Train every trainable parameter of an already built model (no phases; `after_epoch`
    is called with each epoch's number, from 1, e.g. to keep the best state): used to
    fine-tune the digital parts around fixed, measured SSMs."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = cfg.epochs * max(1, -(-len(y) // cfg.batch_size))
    optimizer = OneCycleAdamW([{"params": params, "weight_decay": cfg.weight_decay}], [cfg.lr],
                              steps, pct_start=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(1, cfg.epochs + 1):
        _run_epoch(model, xt, yt, optimizer, cfg, rng)
        if after_epoch is not None:
            after_epoch(epoch)
    model.eval()


def train(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          model_cfg: ModelConfig, cfg: TrainConfig,
          progress: Callable[[dict], None] | None = None,
          split: tuple[np.ndarray, np.ndarray] | None = None,
          board: BoardProfile | None = None,
          initial: S4DClassifier | None = None) -> TrainResult:
    """Train an S4D classifier; `progress` is called after every epoch with its record.

    `initial` fine-tunes that model (of `model_cfg`, e.g. an imported one) instead of a new one:
    no float phase, every epoch quantized (the last ones through the board's loop as below).

    `split` gives the (fit, validation) indices of the training data (e.g. held-out speakers,
    `TaskData.validation_split`); by default a random `cfg.validation_fraction` validates.
    With `board` and `cfg.hardware_fraction`, the last epochs run every recurrence through
    the board's loop at the scales the compiler will choose (measured on `x_train` after every
    epoch); the epoch kept is then the best of those, validated through the loop.
    """
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if split is None:
        order = rng.permutation(len(y_train))
        n_val = int(round(cfg.validation_fraction * len(y_train)))
        split = order[n_val:], order[:n_val]
    x_fit, y_fit = x_train[split[0]], y_train[split[0]]
    x_val, y_val = x_train[split[1]], y_train[split[1]]
    model = S4DClassifier(model_cfg) if initial is None else initial
    quantized = model_cfg.bits is not None
    float_epochs, hardware_epochs = cfg.phase_epochs(quantized, board is not None)
    if initial is not None and quantized:
        float_epochs = 0
    last_phase = "hardware" if hardware_epochs else "qat" if quantized else "float"
    steps_per_epoch = max(1, -(-len(y_fit) // cfg.batch_size))
    optimizer = OneCycleAdamW(model.parameter_groups(cfg.lr, cfg.ssm_lr, cfg.weight_decay),
                              [cfg.lr, cfg.ssm_lr], cfg.epochs * steps_per_epoch, pct_start=0.1)
    xt, yt = torch.from_numpy(x_fit), torch.from_numpy(y_fit)
    history: list[dict] = []
    float_accuracy: float | None = None
    best_state, best_val = None, -1.0
    set_quantized(model, False)
    scales = best_scales = None
    for epoch in range(cfg.epochs):
        phase = ("float" if epoch < float_epochs else
                 "hardware" if epoch >= cfg.epochs - hardware_epochs else "qat")
        if quantized and epoch == float_epochs:
            float_accuracy = accuracy(model, x_test, y_test) if epoch else None
            set_quantized(model, True)
        if phase == "hardware" and scales is None:
            scales = hardware_aware.model_scales(model, x_train, board)
            hardware_aware.install(model, board, scales)
        loss = _run_epoch(model, xt, yt, optimizer, cfg, rng)
        if phase == "hardware":  # the scales of the weights as they are now, as compiled
            scales = hardware_aware.model_scales(model, x_train, board)
            hardware_aware.install(model, board, scales)
        val_acc = accuracy(model, x_val, y_val) if len(y_val) else accuracy(model, x_fit, y_fit)
        record = {"epoch": epoch + 1, "phase": phase, "loss": loss, "val_accuracy": val_acc}
        history.append(record)
        if phase == last_phase and val_acc >= best_val:
            best_val, best_scales = val_acc, scales
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if progress:
            progress(record)
    if not quantized:
        float_accuracy = accuracy(model, x_test, y_test)
    model.load_state_dict(best_state)
    model.eval()
    loop_accuracy = loop_scales = None
    if best_scales is not None:
        loop_scales = hardware_aware.fit_state_gains(model, x_train, board, best_scales)
        loop_accuracy = accuracy_through_loop(model, board, loop_scales, x_test, y_test)
    test_predictions = predictions(model, x_test)
    return TrainResult(model, score(test_predictions, y_test), test_predictions, float_accuracy,
                       history, time.perf_counter() - start, loop_accuracy, loop_scales)


def config_record(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """The settings of a run, for reports."""
    return {"model": model_cfg.to_dict(), "train": cfg.to_dict()}


def train_task(data_spec: "DataSpec", out: str | Path, *, model: dict, epochs: int,
               board: BoardProfile | None = None, hardware_aware: bool = False,
               data_progress: Callable[[int, int], None] | None = None,
               epoch_progress: Callable[[dict], None] | None = None) -> dict:
    """Load the data of `data_spec`, train a model of `model` (ModelConfig fields but
    d_input and n_classes, e.g. `config.task_model(task, bits=2)`), and save `out`.

    With `board`, the checkpoint keeps the loop scales for that board (the compiler uses
    them); `hardware_aware` also trains the last `HARDWARE_FRACTION` of the epochs through
    its loop.

    Validation (the epoch kept) uses held-out training speakers where there are enough of
    them (`TaskData.validation_split`). Returns the summary (task, classes, bits, accuracies,
    the test split's confusion counts and worst confusions, sizes, epochs, wall time, digest);
    the checkpoint's metadata carries it too, with the data spec (features included) that
    inference and fine-tuning load again.
    """
    from imssa_hw.data import load_data

    data = load_data(data_spec, progress=data_progress)
    model_cfg = ModelConfig(d_input=data.x_train.shape[-1], n_classes=len(data.classes), **model)
    if hardware_aware and board is None:
        raise BadInput("hardware-aware training needs a board profile")
    cfg = TrainConfig(epochs=epochs, seed=data_spec.seed,
                      hardware_fraction=HARDWARE_FRACTION if hardware_aware else 0.0)
    split = data.validation_split(cfg.validation_fraction, cfg.seed)
    result = train(data.x_train, data.y_train, data.x_test, data.y_test, model_cfg, cfg,
                   progress=epoch_progress, split=split, board=board)
    return save_result(out, result, data, data_spec, cfg, board, len(split[1]))


def save_result(out: str | Path, result: TrainResult, data: "TaskData", data_spec: "DataSpec",
                cfg: TrainConfig, board: BoardProfile | None, n_validation: int,
                extra: dict | None = None) -> dict:
    """Save `result.model` at `out` with everything inference needs again (data spec,
    normalization, the board's loop scales) and return its summary (task, classes, bits,
    accuracies, the test split's confusion counts and worst confusions, sizes, epochs, wall
    time, digest, history), with `extra` added to both."""
    from imssa_hw.training.classifier import save_model

    model_cfg = result.model.cfg
    counts = confusion(data.y_test, result.test_predictions, len(data.classes))
    summary = {
        "task": data_spec.task, "dataset": data_spec.dataset,
        "classes": data.classes, "class_names": data.class_names, "bits": model_cfg.bits,
        "software_accuracy": result.software_accuracy, "float_accuracy": result.float_accuracy,
        "test_confusion": counts.tolist(),
        "worst_confusions": worst_confusions(counts, data.class_names),
        "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
        "n_validation": int(n_validation), "epochs": len(result.history),
        "speakers_test": data.info.get("speakers_test"),
        "board_profile": board.name if board else None,
        "hardware_aware": bool(cfg.hardware_fraction and model_cfg.bits),
        "loop_accuracy": result.loop_accuracy,
        "wall_time_s": round(result.wall_time_s, 2), **(extra or {}),
    }
    features = ({"n_frames": int(data.x_train.shape[1])} if data.features is None
                else data.features.to_dict())  # the compiler reads the sequence length here
    meta = {**summary, "seed": cfg.seed, "features": features,
            "normalization": data.normalization, "data": data.info,
            "data_spec": data_spec.to_dict(), "config": config_record(model_cfg, cfg)}
    digest = save_model(out, result.model, meta, range_features=data.x_train, board=board,
                        scales=result.loop_scales)
    return {**summary, "digest": digest, "history": result.history}
