"""Hardware-in-the-loop inference: the S4D kernels on the board, the rest on the host.

The host computes the encoder, the digital parts between layers and the decoder with the numpy
twin (`imssa_hw.model.reference`); each layer's recurrences run on the crossbar following the
compiled schedule, in one of two modes:
- host: the compiler's reference executor drives the board one VMM per array per step;
- onboard: the board runs the loop programs itself; one frame carries a chunk of sequences.
Every sample is also run through the ideal quantized model for comparison.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from imssa_hw.compiler import Executor, per_vector
from imssa_hw.compiler.artifact import Deployment
from imssa_hw.model.checkpoint import CHECKPOINT_FILE
from imssa_hw.compiler.schedule import FLUSH_STEPS
from imssa_hw.data.labels import confusion
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.errors import BadInput
from imssa_hw.hil.mode import InferenceMode
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import Checkpoint

ONBOARD_CHUNK = 25  # sequences per RUN_SEQUENCE frame: progress stays live, frames stay small
HOST_CHUNK = 4      # sequences per progress update in host mode


@dataclass
class InferenceResult:
    """Hardware and software logits of every sample, with what it took."""

    mode: InferenceMode
    labels: np.ndarray
    hardware_logits: np.ndarray
    software_logits: np.ndarray
    wall_time_s: float
    crossbar_steps: int
    frames: int
    traces: dict = field(default_factory=dict)

    @property
    def hardware_pred(self) -> np.ndarray:
        return self.hardware_logits.argmax(-1)

    @property
    def software_pred(self) -> np.ndarray:
        return self.software_logits.argmax(-1)

    @property
    def hardware_accuracy(self) -> float:
        """Fraction of samples the board classifies right."""
        return float((self.hardware_pred == self.labels).mean())

    @property
    def software_accuracy(self) -> float:
        """Fraction the quantized model classifies right in software (ideal kernels)."""
        return float((self.software_pred == self.labels).mean())

    @property
    def agreement(self) -> float:
        """Fraction of samples where board and software decide alike."""
        return float((self.hardware_pred == self.software_pred).mean())

    def disagreement_margins(self) -> np.ndarray:
        """The software's margin (its top logit minus the next) on every sample where the
        hardware decides otherwise, ascending: how near the decision boundary the flips lie."""
        top2 = np.sort(self.software_logits, axis=-1)[:, -2:]
        flipped = self.hardware_pred != self.software_pred
        return np.sort(top2[flipped, 1] - top2[flipped, 0])

    def report(self, n_classes: int) -> dict:
        """The JSON report fields (accuracies 0..1, confusion[true][predicted])."""
        return {
            "mode": self.mode,
            "n_samples": int(len(self.labels)),
            "hardware_accuracy": self.hardware_accuracy,
            "software_accuracy": self.software_accuracy,
            "agreement": self.agreement,
            "confusion": confusion(self.labels, self.hardware_pred, n_classes).tolist(),
            "software_confusion": confusion(self.labels, self.software_pred, n_classes).tolist(),
            "max_abs_logit_error": float(np.abs(self.hardware_logits - self.software_logits).max()),
            "rms_logit_error": float(np.sqrt(np.mean((self.hardware_logits
                                                      - self.software_logits) ** 2))),
            "disagreement_margins": self.disagreement_margins().tolist(),
            "steps_per_s": self.crossbar_steps / self.wall_time_s if self.wall_time_s else 0.0,
            "crossbar_steps": self.crossbar_steps,
            "frames": self.frames,
            "wall_time_s": round(self.wall_time_s, 3),
        }


def belongs(ckpt: Checkpoint, dep: Deployment) -> bool:
    """The checkpoint is the compiled one, or a chip-in-the-loop fine-tuning of it (same
    kernels, retrained digital parts)."""
    return dep.model_digest in (ckpt.digest, ckpt.meta.get("finetuned_from"))


class BoardRecurrence:
    """A `reference.Recurrence` that runs each layer's kernels on a board.

    `correct(array, currents)` maps raw column currents to true ones (calibration); identity
    when None.
    """

    def __init__(self, board, dep: Deployment, mode: InferenceMode | str,
                 correct: Callable[[int, np.ndarray], np.ndarray] | None = None,
                 progress: Callable[[int], None] | None = None):
        if mode not in set(InferenceMode):
            raise BadInput(f"mode must be one of {', '.join(InferenceMode)}, got {mode!r}")
        self.board, self.dep, self.mode = board, dep, InferenceMode(mode)
        self.correct = correct
        self.progress = progress or (lambda n: None)
        self.steps = 0
        self.last_y: dict[int, np.ndarray] = {}

    def _vmm(self, array: int, v_rows: np.ndarray) -> np.ndarray:
        currents = self.board.vmm(array, v_rows)
        return self.correct(array, currents) if self.correct else currents

    def __call__(self, layer: int, u: np.ndarray) -> np.ndarray:
        schedule = self.dep.schedule.layers[layer]
        self.board.configure(vmm_range_a=schedule.vmm_range_a)
        if self.mode is InferenceMode.HOST:
            executor = Executor(self.dep.schedule, per_vector(self._vmm))
            y = self._batched(u, HOST_CHUNK, lambda part: executor(layer, part))
        else:
            y = self._onboard(layer, u)
        self.steps += len(u) * (u.shape[1] + FLUSH_STEPS) * len(schedule.programs)
        self.last_y[layer] = y
        return y

    def _column_correction(self, array: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The calibration as the board's firmware column correction: gain and offset (A)
        such that correct(I) = (I - offset) / gain; (None, None) without calibration."""
        if self.correct is None:
            return None, None
        cols = self.board.info.cols
        at_zero = self.correct(array, np.zeros(cols))
        gain = 1.0 / (self.correct(array, np.ones(cols)) - at_zero)
        return gain, -at_zero * gain

    def _batched(self, batch: np.ndarray, size: int, run: Callable[[np.ndarray], np.ndarray]
                 ) -> np.ndarray:
        """run() on chunks of `size` sequences, reporting progress after each."""
        parts = []
        for start in range(0, len(batch), size):
            parts.append(run(batch[start:start + size]))
            self.progress(len(parts[-1]))
        return np.concatenate(parts)

    def _onboard(self, layer: int, u: np.ndarray) -> np.ndarray:
        schedule = self.dep.schedule.layers[layer]
        programs = [replace(p, **dict(zip(("column_gain", "column_offset_a"),
                                          self._column_correction(p.array))))
                    for p in schedule.programs]
        self.board.load_program(programs)
        padded = np.concatenate([u, np.zeros((len(u), FLUSH_STEPS, u.shape[2]))], axis=1)
        return schedule.ssm_output(self._batched(padded, ONBOARD_CHUNK, self.board.run_sequence))


def check_mode(board: BoardLike, mode: InferenceMode | str) -> None:
    """BadInput unless `board` can run `mode` (on-board mode needs an on-board loop)."""
    if mode == InferenceMode.ONBOARD and not board.capabilities.on_board_loop:
        raise BadInput(f"board {board.info.board_id} has no on-board loop (capability "
                       f"on_board_loop is false): use host mode (infer --mode host)")


def run_inference(board: BoardLike, dep: Deployment, ckpt: Checkpoint, features: np.ndarray,
                  labels: np.ndarray, mode: InferenceMode | str = InferenceMode.ONBOARD,
                  correct: Callable[[int, np.ndarray], np.ndarray] | None = None,
                  progress: Callable[[int], None] | None = None) -> InferenceResult:
    """Classify `features` (B, L, F) on the board and with the ideal quantized model."""
    if not belongs(ckpt, dep):
        raise BadInput("the checkpoint is not the one this deployment was compiled from "
                       f"(digest {ckpt.digest[:12]} vs {dep.model_digest[:12]})")
    dep.check_board(board.info)
    check_mode(board, mode)
    recurrence = BoardRecurrence(board, dep, mode, correct, progress)
    frames_before = board.frames_sent
    start = time.perf_counter()
    hardware = reference.forward(ckpt, features, recurrence=recurrence)
    wall = time.perf_counter() - start
    software = reference.forward(ckpt, features)
    traces = {"hardware_y": recurrence.last_y[0][:4],
              "software_y": reference.ideal_recurrence(ckpt.kernels(0),
                                                       reference.encode(ckpt, features[:4]))}
    return InferenceResult(recurrence.mode, np.asarray(labels), hardware, software, wall, recurrence.steps,
                           board.frames_sent - frames_before, traces)


def open_deployment(deploy_dir: str | Path, checkpoint: str | Path | None = None
                    ) -> tuple[Deployment, Checkpoint]:
    """Load a deploy directory and its checkpoint (default: DEPLOY_DIR/model.pt), matched."""
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.compiler import load_deployment

    dep = load_deployment(deploy_dir)
    ckpt = load_checkpoint(checkpoint or Path(deploy_dir) / CHECKPOINT_FILE)
    if not belongs(ckpt, dep):
        raise BadInput(f"{checkpoint or Path(deploy_dir) / CHECKPOINT_FILE} is not the model "
                       f"{deploy_dir} was compiled from (nor fine-tuned from it)")
    return dep, ckpt


def load_test_set(ckpt: Checkpoint, data_root: str | Path | None = None,
                  limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The test split of the task the model was trained on: features, labels, class names."""
    from imssa_hw.data import DataSpec, load_data
    from imssa_hw.data.tasks import ROOTED_DATASETS

    spec = DataSpec.of_checkpoint(ckpt.meta)
    if data_root is not None and spec.dataset in ROOTED_DATASETS:
        spec = replace(spec, data_root=str(data_root))
    data = load_data(spec)
    n = len(data.y_test) if limit is None else min(limit, len(data.y_test))
    return data.x_test[:n], data.y_test[:n], list(data.class_names)


FINE_FRACTION = 0.8
"""`read_maps` takes a device from the smallest ADC range when it reads below this fraction of
that range's full scale (20 uS at 0.2 V on a 5 uA range): clear of saturation there."""


def read_maps(board: BoardLike, dep: Deployment, calibration=None,
              reads: int = 8) -> tuple[np.ndarray, float | None]:
    """The conductances the board holds (S): the mean of `reads` reads of each array the
    deployment uses, corrected by the calibration, the targets elsewhere; and the read noise
    those reads show, by calibration's estimator (`calibration.relaxation.read_noise_rel`; None
    when no device reads high enough). Fine-tuning and the budget start from these.

    Devices that read below FINE_FRACTION of the smallest ADC range are read `reads` times more
    on that range: on the read range one code is worth about 0.8 uS on board-default, and the
    read noise of a device near 1 uS is too small to dither it, so averaging alone leaves low
    devices up to half a code off."""
    from imssa_hw.calibration.relaxation import read_noise_rel

    maps = np.array(dep.targets_siemens, dtype=float)
    single = []
    arrays = sorted({p.array for layer in dep.schedule.layers for p in layer.programs})
    for array in arrays:
        g = _corrected_reads(board, array, calibration, reads)
        maps[array] = g.mean(axis=0)
        single.append(g.reshape(reads, -1))
    info, config = board.info, board.config
    lsb_siemens = info.read_lsb_siemens(config)
    noise = (read_noise_rel(np.concatenate(single, axis=1), lsb_siemens, info.g_window_siemens[1])
             if single else None)
    coarse_range_a, fine_range_a = config.read_range_a, min(info.adc_ranges_a)
    if fine_range_a < coarse_range_a:
        board.configure(read_range_a=fine_range_a)
        try:
            for array in arrays:
                low = maps[array] * board.config.v_read_v < FINE_FRACTION * fine_range_a
                maps[array][low] = _corrected_reads(board, array, calibration, reads).mean(axis=0)[low]
        finally:
            board.configure(read_range_a=coarse_range_a)
    return maps, noise


def _corrected_reads(board: BoardLike, array: int, calibration, reads: int) -> np.ndarray:
    """(reads, rows, cols) reads of `array` at the board's present settings, S, corrected by
    the calibration when there is one."""
    g = np.array([board.read_array(array) for _ in range(reads)])
    if calibration is None:
        return g
    return calibration.correct_conductance(array, g, v_read_v=board.config.v_read_v,
                                           read_range_a=board.config.read_range_a)


def current_correction(cal, board) -> Callable[[int, np.ndarray], np.ndarray]:
    """The calibration's VMM correction at the board's present ADC range, as `correct`."""
    cal.check_board(board.info)

    def correct(array: int, currents: np.ndarray) -> np.ndarray:
        return cal.correct_currents(array, currents, range_a=board.config.vmm_range_a)
    return correct


@contextmanager
def board_session(port: str, timeout_s: float | None, calibration: str | Path | None = None):
    """Open the board at `port`; yields (board, correct) where `correct` applies the
    calibration (or is None without one)."""
    from imssa_hw.calibration.data import load_calibration
    from imssa_hw.drivers.open import open_board

    cal = load_calibration(calibration) if calibration is not None else None
    with open_board(port, timeout_s) as board:
        yield board, (current_correction(cal, board) if cal is not None else None)
