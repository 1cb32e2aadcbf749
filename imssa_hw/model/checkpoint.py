"""Safe checkpoints: safetensors (no pickle, nothing executed on load) plus JSON metadata.

A checkpoint holds the float weights, the deployed integer levels and steps of every S4D
kernel (`kernels.{layer}.{a_re,a_im,a_step,b_re,...}`), the model config and metadata (task,
classes, feature settings, accuracy). A SHA-256 digest over all of it is stored in the header
and checked on load, so a modified file is refused. Loading needs numpy only (no torch), which
keeps the compiler path light.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path
from imssa_hw.model.config import ModelConfig

FORMAT = "imssa-hw-checkpoint"
VERSION = 1
KERNEL_FIELDS = ("a_re", "a_im", "a_step", "b_re", "b_im", "b_step", "c_re", "c_im", "c_step")


@dataclass(frozen=True)
class QuantizedKernels:
    """One layer's H kernels as deployed: value = level * step (complex levels, steps per kernel).

    Level arrays are int (H, N/2); steps float (H,); d float (H,) stays digital.
    """

    a_re: np.ndarray
    a_im: np.ndarray
    a_step: np.ndarray
    b_re: np.ndarray
    b_im: np.ndarray
    b_step: np.ndarray
    c_re: np.ndarray
    c_im: np.ndarray
    c_step: np.ndarray
    d: np.ndarray

    def complex_values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Abar, Bbar, C as complex128 arrays (H, N/2), computed in float32 like the model."""
        def value(re, im, step):
            s = step.astype(np.float32)[:, None]
            return (re.astype(np.float32) * s).astype(np.float64) + 1j * (
                im.astype(np.float32) * s).astype(np.float64)
        return (value(self.a_re, self.a_im, self.a_step), value(self.b_re, self.b_im, self.b_step),
                value(self.c_re, self.c_im, self.c_step))


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: config, tensors (numpy), metadata and the content digest."""

    config: ModelConfig
    tensors: dict[str, np.ndarray]
    meta: dict
    digest: str

    def kernels(self, layer: int) -> QuantizedKernels:
        """The quantized kernels of S4D layer `layer`."""
        values = {f: self.tensors[f"kernels.{layer}.{f}"] for f in KERNEL_FIELDS}
        return QuantizedKernels(**values, d=self.tensors[f"blocks.{layer}.ssm.d"])

    @property
    def quantized(self) -> bool:
        return self.config.bits is not None


def _digest(tensors: dict[str, np.ndarray], config: dict, meta: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"config": config, "meta": meta}, sort_keys=True).encode())
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_checkpoint(path: str | Path, tensors: dict[str, np.ndarray], config: ModelConfig,
                     meta: dict) -> str:
    """Write tensors + config + meta atomically; returns the digest."""
    from safetensors.numpy import save_file

    cfg = config.to_dict()
    meta = json.loads(json.dumps(meta))  # JSON-able, and the same form it loads back as
    digest = _digest(tensors, cfg, meta)
    header = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(cfg),
              "meta": json.dumps(meta), "digest": digest}
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                  metadata=header)
    return digest


CHECKPOINT_FILE = "model.pt"
"""A checkpoint's name in the folders `train --out` and `compile --out` write."""
FINETUNED_FILE = "model-finetuned.pt"
"""A chip-in-the-loop fine-tuned checkpoint's name (`finetune --out`, the demo's deploy/)."""


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a checkpoint (a file, or a folder holding CHECKPOINT_FILE); any problem
    is a `BadInput` naming the file."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():  # a folder `imssa-hw train --out` or `compile --out` wrote
        if not (path / CHECKPOINT_FILE).is_file():
            raise BadInput(f"{path} is a folder without a {CHECKPOINT_FILE}: give the "
                           f"checkpoint file, or the folder `imssa-hw train --out` wrote")
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise BadInput(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises several types for foreign bytes
        raise BadInput(f"{path} is not an imssa-hw checkpoint (unreadable safetensors: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if header.get("format") != FORMAT:
        raise BadInput(f"{path} is not an imssa-hw checkpoint (format {header.get('format')!r})")
    if header.get("version") != str(VERSION):
        raise BadInput(f"{path}: checkpoint version {header.get('version')} is not supported "
                       f"(this imssa-hw reads version {VERSION})")
    try:
        cfg = json.loads(header["config"])
        meta = json.loads(header["meta"])
        config = ModelConfig.from_dict(cfg)
    except (KeyError, ValueError, TypeError) as exc:
        raise BadInput(f"{path}: malformed checkpoint header ({exc})") from None
    digest = _digest(tensors, cfg, meta)
    if digest != header.get("digest"):
        raise BadInput(f"{path}: content does not match its digest (modified or corrupted)")
    return Checkpoint(config, tensors, meta, digest)
