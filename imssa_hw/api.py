"""The Python API: the command line's flow as functions, for scripts and notebooks.

    import imssa_hw as hw

    model = hw.shipped_model("zero-one")             # or hw.train(...), hw.load_model(path)
    with hw.open_board("emu://?seed=1") as board:    # an emulated board in this process
        run = hw.calibrate(board)                    # read chain, device curves, defects
        dep = hw.compile(model, "board-default", calibration=run)
        hw.program(board, dep, calibration=run)      # write-verify every device
        result = hw.infer(board, dep, model, calibration=run, limit=100)
    print(result.hardware_accuracy, result.software_accuracy, result.agreement)

Each function is the one its command runs (`imssa-hw train`, `compile`, `calibrate`, `program`,
`infer`); they take and return the same objects the commands save (`Checkpoint`,
`Deployment`, `CalibrationRun`, `ProgramResult`, `InferenceResult`). Errors are
`imssa_hw.errors.BadInput` for bad input and `imssa_hw.errors.HardwareError` when the
hardware fails, as the commands' exit codes 2 and 3. docs/api.md has the walkthrough.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from imssa_hw import API

if TYPE_CHECKING:
    from imssa_hw.calibration.data import Calibration
    from imssa_hw.calibration.procedure import CalibrationRun
    from imssa_hw.calibration.settings import CalibrationSettings
    from imssa_hw.board import BoardProfile
    from imssa_hw.compiler import Deployment
    from imssa_hw.compiler.defects import DefectMap
    from imssa_hw.drivers.board_like import BoardLike
    from imssa_hw.hil.inference import InferenceResult
    from imssa_hw.model.checkpoint import Checkpoint
    from imssa_hw.programming.runner import ProgramResult
    from imssa_hw.programming.settings import ProgramSettings

CalibrationLike = "CalibrationRun | Calibration | str | Path | None"
"""What `calibration=` takes: a run of `calibrate`, its `Calibration`, or the folder (or
calib.json) that `imssa-hw calibrate --out` wrote; None for none."""

__all__ = list(API)


def train(task: str = "zero-one", out: str | Path = "model.pt", *, bits: int | None = None,
          epochs: int | None = None, seed: int = 0, dataset: str | None = None,
          data_root: str | Path | None = None, test_speakers: Sequence[int] | None = None,
          board_profile: "str | BoardProfile" = "board-default", hardware_aware: bool = True,
          progress: Callable[[dict], None] | None = None) -> "Checkpoint":
    """Train the task's S4D classifier as `imssa-hw train` does (its defaults: the shipped FSDD
    speech for zero-one and digits, the task's model and bits, 40 epochs, hardware-aware for
    `board_profile`), save it to `out` and return it. `progress(record)` is called after each
    epoch; the checkpoint's `meta["training"]` holds the training report. Minutes on a CPU."""
    from imssa_hw.data import DataSpec
    from imssa_hw.model.config import TASK_EPOCHS, task_model
    from imssa_hw.training.trainer import train_task

    model = task_model(task, bits=bits)
    spec = DataSpec.default(task, dataset, seed=seed, test_speakers=test_speakers,
                            data_root=None if data_root is None else str(data_root))
    board = _profile(board_profile)
    train_task(spec, out, model=model, epochs=epochs or TASK_EPOCHS, board=board,
               hardware_aware=hardware_aware and model["bits"] is not None,
               epoch_progress=progress)
    return load_model(out)


def load_model(path: str | Path) -> "Checkpoint":
    """A checkpoint written by `train` (safetensors; nothing in it is executed)."""
    from imssa_hw.model.checkpoint import load_checkpoint

    return load_checkpoint(path)


def shipped_model(name: str = "zero-one") -> "Checkpoint":
    """A trained model shipped with imssa-hw: "zero-one" (board-default), "digits"
    (board-multi) or "zero-one-board-arc2" (imssa_hw/models/README.md)."""
    from imssa_hw.errors import BadInput
    from imssa_hw.workflows.model_cache import shipped_checkpoint, shipped_models

    names = sorted(shipped_models())
    if name not in names:
        raise BadInput(f"no shipped model {name!r}; shipped: {', '.join(names)}")
    return shipped_checkpoint(name)


def open_board(port: str, timeout_s: float | None = None) -> "BoardLike":
    """The board at `port`, connected; use it as a context manager. Ports: a serial device
    or pty path, `emu://?seed=N[&profile=NAME]` (an emulated board in this process),
    `socket://HOST:PORT`, `arc2://ID` (an ArC TWO). `timeout_s`: the reply timeout (0.5 s by
    default; none for an ArC TWO)."""
    from imssa_hw.drivers.open import open_board as open_port

    return open_port(port, timeout_s)


def calibrate(board: "BoardLike", smu=None,
              settings: "CalibrationSettings | None" = None, *,
              waits: "tuple[Callable[[], float], Callable[[float], None]] | None" = None
              ) -> "CalibrationRun":
    """Calibrate `board`: its read chain (against `smu`, from `imssa_hw.drivers.smu.open_smu`, or
    on-array references without one), device curves and defect map; `settings`
    (`imssa_hw.calibration.settings.CalibrationSettings`) as `imssa-hw calibrate`'s options.
    `waits`: (clock, sleep) the settling waits count on and wait with, None for real time (a
    board on virtual time, `emu://?clock=virtual`, takes `emulator.clock.VIRTUAL_WAITS`).
    Returns the run: `.calibration`, `.defects` and `.report`."""
    from imssa_hw.calibration.procedure import calibrate as run_calibration

    clock, sleep = waits or (time.monotonic, time.sleep)
    return run_calibration(board, smu, settings, clock=clock, sleep=sleep)


def compile(model: "Checkpoint", profile: "str | BoardProfile" = "board-default", *,  # noqa: A001
            calibration: CalibrationLike = None, seed: int = 0, placement: str = "auto",
            repair: bool = True) -> "Deployment":
    """Compile `model` for the board of `profile` (a shipped profile name, a TOML file or a
    `BoardProfile`): conductance targets, placement around the calibration's defects, and the
    loop schedule; a calibration folder's defects.json is read with it. `save_deployment(dep,
    folder)` (imssa_hw.compiler) writes what `imssa-hw compile` writes."""
    from imssa_hw.compiler import compile_checkpoint

    board = _profile(profile)
    cal = _calibration(calibration)
    return compile_checkpoint(
        model, board, _defects(calibration, board), seed=seed,
        column_offsets_codes=None if cal is None else cal.offset_codes(board.read.adc_bits),
        placement=placement, repair_defects=repair)


def program(board: "BoardLike", dep: "Deployment", *, calibration: CalibrationLike = None,
            journal: str | Path | None = None, resume: bool = False,
            settings: "ProgramSettings | None" = None,
            waits: "tuple[Callable[[], float], Callable[[float], None]] | None" = None
            ) -> "ProgramResult":
    """Write-verify every device of `dep` onto `board`, within the profile's tolerance. With
    `journal`, every pulse is journaled first; `resume=True` continues a journaled run.
    `settings` (`imssa_hw.programming.settings.ProgramSettings`): delays and limits, as
    `imssa-hw program`'s options. `waits`: as `calibrate`'s."""
    from imssa_hw.programming import program_deployment

    clock, sleep = waits or (time.time, time.sleep)
    return program_deployment(board, dep, calibration=_calibration(calibration),
                              journal=journal, resume=resume, settings=settings, clock=clock,
                              sleep=sleep)


def infer(board: "BoardLike", dep: "Deployment", model: "Checkpoint", *,
          calibration: CalibrationLike = None, features: np.ndarray | None = None,
          labels: np.ndarray | None = None, limit: int | None = None,
          mode: str = "onboard") -> "InferenceResult":
    """Classify on the board and in software. Without `features` (B, L, F) and `labels`, the
    test split the model was trained with (its first `limit` recordings). `mode`: "onboard"
    (the board runs each kernel's loop) or "host" (one VMM per kernel and step)."""
    from imssa_hw.errors import BadInput
    from imssa_hw.hil.inference import current_correction, load_test_set, run_inference

    if features is None:
        if labels is not None:
            raise BadInput("labels without features: give both, or neither for the test split")
        features, labels, _ = load_test_set(model, limit=limit)
    elif labels is None:
        raise BadInput("features without labels: give both, or neither for the test split")
    cal = _calibration(calibration)
    correct = None if cal is None else current_correction(cal, board)
    return run_inference(board, dep, model, np.asarray(features), np.asarray(labels), mode,
                         correct)


def _profile(profile: "str | BoardProfile") -> "BoardProfile":
    from imssa_hw.board import load_board_profile

    return load_board_profile(profile) if isinstance(profile, (str, Path)) else profile


def _is_run(calibration) -> bool:
    from imssa_hw.calibration.procedure import CalibrationRun

    return isinstance(calibration, CalibrationRun)


def _defects(calibration, board: "BoardProfile") -> "DefectMap | None":
    """The defect map that comes with `calibration=`: a run's, or a calibration folder's
    defects.json; None otherwise."""
    from imssa_hw.calibration.outputs import DEFECTS
    from imssa_hw.compiler import load_defects

    if _is_run(calibration):
        return calibration.defects
    if isinstance(calibration, (str, Path)) and (Path(calibration) / DEFECTS).is_file():
        return load_defects(Path(calibration) / DEFECTS, board.geometry)
    return None


def _calibration(calibration) -> "Calibration | None":
    """The `Calibration` that `calibration=` names (see `CalibrationLike`)."""
    from imssa_hw.calibration.data import load_calibration

    if calibration is None:
        return None
    if _is_run(calibration):
        return calibration.calibration
    if isinstance(calibration, (str, Path)):
        return load_calibration(calibration)
    return calibration
