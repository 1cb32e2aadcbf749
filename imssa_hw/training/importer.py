"""Import an S4D model trained with the reference implementation (state-spaces/s4).

The layout read is the reference's: `models/s4/s4d.py` (an `S4D` layer: `D` (H,), its
`kernel`, an `S4DKernel` with `log_dt` (H,), `C` (H, N/2, 2), the real view of a complex
tensor, `log_A_real` and `A_imag` (H, N/2), optionally a trained `B` like `C`; then GELU,
dropout and `output_linear`, Conv1d(H, 2H, 1) + GLU) inside the `S4Model` of `example.py`
(`encoder` Linear, `s4_layers`, each followed by dropout, the residual and a post-norm
`norms` LayerNorm; mean pooling; `decoder` Linear). That is our classifier, block for block,
so the float model maps exactly: the reference's Abar = exp(dt A) with ZOH and B = 1 becomes
our kernel at `a_range` (A's real part shifted by log(a_range)/dt, B rescaled so that Bbar is
unchanged), and the data's normalization is folded into the encoder. Anything else is refused
in one line naming it. Quantization is post-training, to the fixed dynamic range, optionally
followed by quantization- and hardware-aware fine-tuning.
"""

from __future__ import annotations

import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from imssa_hw.board.profile import BoardProfile
from imssa_hw.errors import BadInput
from imssa_hw.model.config import HARDWARE_FRACTION, ModelConfig, TrainConfig
from imssa_hw.training import hardware_aware
from imssa_hw.training.classifier import S4DClassifier
from imssa_hw.training.trainer import (TrainResult, accuracy, accuracy_through_loop,
                                       predictions, save_result, score, set_quantized, train)

if TYPE_CHECKING:
    from imssa_hw.data import DataSpec

KERNEL_KEYS = ("log_dt", "C", "log_A_real", "A_imag")
"""The reference S4DKernel's tensors (`B` too when it was trained, as in the full S4 repo)."""
NON_DIAGONAL = ("P", "Q", "w", "inv_w_real", "log_w_real")
"""Tensors of S4's diagonal-plus-low-rank (NPLR) kernels: not diagonal, not mapped."""
LAYER = re.compile(r"s4_layers\.(\d+)\.(.+)")
NORM = re.compile(r"norms\.(\d+)\.(weight|bias)")
FINETUNE_LR = 1e-3
"""Learning rate of the digital parts when fine-tuning an imported model (a tenth of
training's: the model is trained already); the SSM parameters take a tenth of that."""


@dataclass(frozen=True)
class ReferenceLayer:
    """One reference S4D layer and its post-norm, as float64 arrays (complex where complex)."""

    d: np.ndarray
    log_dt: np.ndarray
    log_a_real: np.ndarray
    a_imag: np.ndarray
    b: np.ndarray
    c: np.ndarray
    mix_weight: np.ndarray
    mix_bias: np.ndarray
    norm_weight: np.ndarray
    norm_bias: np.ndarray


@dataclass(frozen=True)
class ReferenceModel:
    """A reference S4Model: encoder, S4D layers, decoder."""

    encoder_weight: np.ndarray
    encoder_bias: np.ndarray
    layers: list[ReferenceLayer]
    decoder_weight: np.ndarray
    decoder_bias: np.ndarray

    @property
    def d_input(self) -> int:
        return int(self.encoder_weight.shape[1])

    @property
    def h(self) -> int:
        return int(self.encoder_weight.shape[0])

    @property
    def n(self) -> int:
        """The reference's d_state N: N/2 complex modes per kernel."""
        return 2 * int(self.layers[0].c.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.decoder_weight.shape[0])


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a saved state dict: a `.safetensors` file, or a torch file read with
    `weights_only=True` (tensors and plain containers only: nothing is executed). A checkpoint
    dict holding the state dict under `model` or `state_dict` (as example.py saves it) is
    opened; a `module.` prefix (DataParallel) is dropped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"{path}: no such file (a state dict saved by torch.save or safetensors)")
    if path.suffix != ".safetensors" and not zipfile.is_zipfile(path):
        raise BadInput(f"{path}: not what torch.save writes (a zip archive; files of torch "
                       "before 1.6: save them again) nor a .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file
            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, a truncated zip, foreign bytes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path}: not a state dict that loads without executing code "
                       f"({type(exc).__name__}: {first})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise BadInput(f"{path}: holds {type(state).__name__}, not a state dict of tensors")
    tensors = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise BadInput(f"{path}: {key} is not a tensor of numbers")
        tensors[str(key).removeprefix("module.")] = value.astype(np.float64)
    return tensors


def _take(state: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in state:
        raise BadInput(f"no {key} in the state dict: not the reference S4Model layout "
                       "(encoder, s4_layers.i.{D,kernel.*,output_linear.0.*}, norms.i, decoder)")
    value = state[key]
    if value.shape != shape:
        raise BadInput(f"{key} has shape {value.shape}, the layout needs {shape}")
    return value


def _layer_index(state: dict[str, np.ndarray]) -> list[int]:
    """The layers' indices 0..n-1; BadInput for a key of another layer type or layout."""
    layers = set()
    for key in state:
        match = LAYER.fullmatch(key)
        if match is None:
            if key in ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias") \
                    or NORM.fullmatch(key):
                continue
            raise BadInput(f"{key}: not part of the reference S4Model layout (encoder, "
                           "s4_layers, norms, decoder): another model or layer type")
        index, rest = int(match.group(1)), match.group(2)
        layers.add(index)
        name = rest.removeprefix("kernel.")
        if rest.startswith("kernel.") and name in NON_DIAGONAL:
            raise BadInput(f"s4_layers.{index}.{rest}: a non-diagonal (diagonal plus low-rank) "
                           "S4 kernel; only diagonal S4D kernels map onto the crossbar")
        if rest.startswith("kernel.") and name not in (*KERNEL_KEYS, "B"):
            raise BadInput(f"s4_layers.{index}.{rest}: not a parameter of the reference "
                           f"S4DKernel ({', '.join(KERNEL_KEYS)}, B): another kernel type")
        if not rest.startswith("kernel.") and rest not in (
                "D", "output_linear.0.weight", "output_linear.0.bias"):
            raise BadInput(f"s4_layers.{index}.{rest}: layer {index} is not a reference S4D "
                           "layer (D, kernel, output_linear): another layer type")
    if not layers:
        raise BadInput("no s4_layers in the state dict: not an S4D model")
    if sorted(layers) != list(range(len(layers))):
        raise BadInput(f"s4_layers {sorted(layers)}: the layers must be numbered 0..n-1")
    return sorted(layers)


def _complex(state: dict[str, np.ndarray], key: str, h: int, modes: int) -> np.ndarray:
    value = state[key]
    if value.ndim == 4:
        kind = "bidirectional" if value.shape[0] == 2 else f"{value.shape[0]}-channel"
        raise BadInput(f"{key} has shape {value.shape}: a {kind} kernel; only one causal "
                       "channel per kernel maps onto the crossbar's recurrence")
    value = _take(state, key, (h, modes, 2))
    return value[..., 0] + 1j * value[..., 1]


def parse_reference(state: dict[str, np.ndarray]) -> ReferenceModel:
    """The reference model of a state dict; BadInput (one line naming it) for anything that
    does not map: another layer type, a bidirectional or non-diagonal kernel, a shape."""
    indices = _layer_index(state)
    encoder = state.get("encoder.weight")
    if encoder is None or encoder.ndim != 2:
        raise BadInput("no encoder.weight (H, input width) in the state dict: not the "
                       "reference S4Model layout")
    h, d_input = encoder.shape
    first_c = state.get(f"s4_layers.{indices[0]}.kernel.C")
    if first_c is None or first_c.ndim < 3:
        raise BadInput(f"s4_layers.{indices[0]}.kernel.C is missing or not a real view "
                       "(H, N/2, 2) of a complex tensor")
    modes = int(first_c.shape[-2])
    layers = []
    for i in indices:
        p = f"s4_layers.{i}."
        c = _complex(state, p + "kernel.C", h, modes)
        b = (_complex(state, p + "kernel.B", h, modes) if p + "kernel.B" in state
             else np.ones((h, modes), complex))
        mix = state.get(p + "output_linear.0.weight")
        if mix is not None and mix.shape not in ((2 * h, h, 1), (2 * h, h)):
            raise BadInput(f"{p}output_linear.0.weight has shape {mix.shape}: the output mixing "
                           f"must be Conv1d({h}, {2 * h}, 1) + GLU as in the reference")
        layers.append(ReferenceLayer(
            d=_take(state, p + "D", (h,)), log_dt=_take(state, p + "kernel.log_dt", (h,)),
            log_a_real=_take(state, p + "kernel.log_A_real", (h, modes)),
            a_imag=_take(state, p + "kernel.A_imag", (h, modes)), b=b, c=c,
            mix_weight=_take(state, p + "output_linear.0.weight",
                             mix.shape if mix is not None else (2 * h, h, 1)).reshape(2 * h, h),
            mix_bias=_take(state, p + "output_linear.0.bias", (2 * h,)),
            norm_weight=_take(state, f"norms.{i}.weight", (h,)),
            norm_bias=_take(state, f"norms.{i}.bias", (h,))))
    decoder = state.get("decoder.weight")
    if decoder is None or decoder.ndim != 2 or decoder.shape[1] != h:
        raise BadInput(f"no decoder.weight (classes, {h}) in the state dict: not the reference "
                       "S4Model layout (mean pooling, then a linear decoder)")
    return ReferenceModel(encoder, _take(state, "encoder.bias", (h,)), layers, decoder,
                          _take(state, "decoder.bias", (decoder.shape[0],)))


def _kernel_tensors(layer: ReferenceLayer, index: int, a_range: float) -> dict[str, np.ndarray]:
    """Our kernel's parameters for the reference one: the same Abar, Bbar and C at `a_range`."""
    dt = np.exp(layer.log_dt)[:, None]
    a_ref = -np.exp(layer.log_a_real) + 1j * layer.a_imag
    re = a_ref.real - np.log(a_range) / dt  # a_range * exp(dt A) == exp(dt A_ref)
    if (re >= 0).any():
        h, mode = np.argwhere(re >= 0)[0]
        raise BadInput(f"layer {index} kernel {h} mode {mode}: a pole |Abar| = "
                       f"{np.exp(dt[h, 0] * a_ref[h, mode].real):.4f} outside --a-range "
                       f"{a_range:g}; take a larger --a-range (at most 1)")
    a = re + 1j * layer.a_imag
    zoh = lambda z: (np.exp(dt * z) - 1) / z  # noqa: E731  Bbar / B under ZOH
    b = layer.b * zoh(a_ref) / zoh(a)
    return {"log_dt": layer.log_dt, "log_a_re": np.log(-re), "a_im": layer.a_imag,
            "b": np.stack([b.real, b.imag], -1), "c": np.stack([layer.c.real, layer.c.imag], -1),
            "d": layer.d}


def to_classifier(ref: ReferenceModel, cfg: ModelConfig,
                  normalization: dict[str, list[float]] | None = None) -> S4DClassifier:
    """Our classifier computing what `ref` computes (in float; quantized when `cfg.bits`),
    on features normalized with `normalization` (folded into the encoder) where `ref` saw
    them raw."""
    model = S4DClassifier(cfg)
    weight, bias = ref.encoder_weight, ref.encoder_bias
    if normalization is not None:
        mean, std = np.asarray(normalization["mean"]), np.asarray(normalization["std"])
        weight, bias = weight * std[None, :], bias + ref.encoder_weight @ mean
    tensors = {"encoder.weight": weight, "encoder.bias": bias,
               "decoder.weight": ref.decoder_weight, "decoder.bias": ref.decoder_bias}
    for i, layer in enumerate(ref.layers):
        tensors.update({f"blocks.{i}.ssm.{k}": v
                        for k, v in _kernel_tensors(layer, i, cfg.a_range).items()})
        tensors.update({f"blocks.{i}.mix.weight": layer.mix_weight,
                        f"blocks.{i}.mix.bias": layer.mix_bias,
                        f"blocks.{i}.norm.weight": layer.norm_weight,
                        f"blocks.{i}.norm.bias": layer.norm_bias})
    state = model.state_dict()
    state.update({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in tensors.items()})
    model.load_state_dict(state)
    return model.eval()


def import_reference(path: str | Path, data_spec: "DataSpec", out: str | Path, *, bits: int,
                     a_range: float = 1.0, board: BoardProfile | None = None,
                     finetune_epochs: int = 0, hardware_aware_finetune: bool = True,
                     epoch_progress: Callable[[dict], None] | None = None) -> dict:
    """Import the reference S4D model saved at `path`, quantize it after training to `bits`
    per device on the fixed dynamic range `a_range` (post-training quantization; the training
    split of `data_spec` calibrates the board's loop scales), optionally fine-tune it for
    `finetune_epochs` quantization-aware (the last quarter through `board`'s loop), and save
    `out`. Returns train's summary plus `import` (float, PTQ and final accuracies)."""
    from imssa_hw.data import load_data

    start = time.perf_counter()
    ref = parse_reference(read_state_dict(path))
    data = load_data(data_spec)
    width = data.x_train.shape[-1]
    if ref.d_input != width:
        raise BadInput(f"{path}: the model takes {ref.d_input} features per step, the data "
                       f"{width}")
    if ref.n_classes != len(data.classes):
        raise BadInput(f"{path}: the model has {ref.n_classes} classes, the data "
                       f"{len(data.classes)} ({', '.join(data.class_names)})")
    torch.manual_seed(data_spec.seed)
    cfg_model = ModelConfig(d_input=width, n_classes=ref.n_classes, h=ref.h, n=ref.n,
                            n_layers=len(ref.layers), bits=bits, a_range=a_range)
    model = to_classifier(ref, cfg_model, data.normalization)
    set_quantized(model, False)
    float_accuracy = accuracy(model, data.x_test, data.y_test)
    set_quantized(model, True)
    ptq_accuracy = accuracy(model, data.x_test, data.y_test)
    hardware = board is not None and hardware_aware_finetune and finetune_epochs > 0
    cfg = TrainConfig(epochs=max(1, finetune_epochs), seed=data_spec.seed, lr=FINETUNE_LR,
                      ssm_lr=FINETUNE_LR / 10,
                      hardware_fraction=HARDWARE_FRACTION if hardware else 0.0)
    split = data.validation_split(cfg.validation_fraction, cfg.seed)
    if finetune_epochs:
        result = train(data.x_train, data.y_train, data.x_test, data.y_test, cfg_model, cfg,
                       progress=epoch_progress, split=split, board=board if hardware else None,
                       initial=model)
        result.float_accuracy = float_accuracy
    else:
        test_predictions = predictions(model, data.x_test)
        scales = None if board is None else hardware_aware.fit_state_gains(
            model, data.x_train, board, hardware_aware.model_scales(model, data.x_train, board))
        result = TrainResult(model, score(test_predictions, data.y_test), test_predictions,
                             float_accuracy, [], time.perf_counter() - start,
                             None if scales is None else accuracy_through_loop(
                                 model, board, scales, data.x_test, data.y_test), scales)
    info = {"import": {"source": str(Path(path).expanduser().resolve()), "a_range": a_range,
                       "float_accuracy": float_accuracy, "ptq_accuracy": ptq_accuracy,
                       "finetune_epochs": finetune_epochs,
                       "hardware_aware_finetune": bool(finetune_epochs and hardware)}}
    return save_result(out, result, data, data_spec, cfg, board, len(split[1]), extra=info)
