"""The whole flow on an emulated board: train -> emulate -> calibrate -> compile -> program -> infer.

`run_demo` is what `imssa-hw demo` runs; with `DemoSettings.port` it runs on that board
instead of an emulated one (an ArC TWO: host mode, on-array calibration unless an SMU is given,
and the programming history exported as arc2control HDF5). Every stage writes what the stand-alone command would,
into one folder, so a user can re-run any stage by hand on the same files. `run_on_board` runs
the stages from calibrate on on any connected board (bench/arc2.py: the ArC TWO stand-in).
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from imssa_hw.config import Config
from imssa_hw.drivers.arc2 import PROFILE as ARC2_PROFILE, SCHEME as ARC2
from imssa_hw.extras import available, missing, require
from imssa_hw.files import write_json
from imssa_hw.hil.mode import InferenceMode
from imssa_hw.model.config import TASK_EPOCHS, task_model

if TYPE_CHECKING:
    from imssa_hw.board.profile import BoardProfile
    from imssa_hw.data import DataSpec
    from imssa_hw.workflows.model_cache import ModelRecipe


@dataclass(frozen=True)
class TaskDemo:
    """A task's demo defaults: the shipped model's bit width, the board it is for, and whether
    the demo fine-tunes the digital parts on the board."""

    bits: int
    board_profile: str
    finetune: bool


TASK_DEMOS: dict[str, TaskDemo] = {
    "zero-one": TaskDemo(bits=2, board_profile="board-default", finetune=True),
    "digits": TaskDemo(bits=4, board_profile="board-multi", finetune=False),
    "hd20": TaskDemo(bits=4, board_profile="board-multi", finetune=False),
    "custom": TaskDemo(bits=4, board_profile="board-multi", finetune=False),
}
"""Per-task demo defaults. zero-one: the paper's one-layer model, 2 bits per device, on the
3 arrays of board-default; ten or twenty classes: 4 bits per device (the README's target) and
128 kernels, 20,736 cells, which only board-multi's 8 arrays hold. Ten digits are not
fine-tuned: the model as trained holds on the board, and chip-in-the-loop tuning lost 1.8 and
3.2 points on the test speaker (board-multi seeds 0 and 1, docs/inference.md). custom (the
shipped UCI digits by default) has the ten-digit model's shape and board."""


@dataclass(frozen=True)
class DemoSettings(Config):
    """What the demo trains and how it deploys it."""

    WHAT: ClassVar[str] = "demo settings"

    task: str = "zero-one"
    bits: int | None = None
    """Bits per device (default: the task's, `TASK_DEMOS`)."""
    seed: int = 0
    epochs: int = TASK_EPOCHS
    model: dict = field(default_factory=dict)
    """Changes to the task's default model (`config.task_model`), e.g. a tiny one."""
    mode: InferenceMode = InferenceMode.ONBOARD
    data: dict = field(default_factory=dict)
    """Changes to the task's default data (`DataSpec.default`): real speech, augmented."""
    hardware_aware: bool = True
    """Train the last epochs through the board's loop (`imssa_hw.training.hardware_aware`)."""
    board_profile: str | None = None
    """The board profile the model is trained for and compiled to (default: the task's)."""
    board_seed: int | None = None
    """Seed of the emulated board (default: `seed`)."""
    emulator: dict = field(default_factory=dict)  # emulator options (arrays, rows, settings...)
    retrain: bool = False
    """Train anew (and cache) even when a shipped or cached model matches."""
    finetune: bool | None = None
    """Fine-tune the digital parts on the board and infer again (default: the task's)."""
    port: str | None = None
    """A board to run on instead of an emulated one (any --port: serial, emu://, arc2://)."""
    smu: str | None = None
    """With `port`: the SMU's VISA resource for calibration (None: on-array references)."""
    plots: bool = True
    """Write every stage's PNGs (False: the reports and data alone, as each command's
    --no-plots)."""

    def __post_init__(self) -> None:
        defaults = TASK_DEMOS[self.task]
        if self.port is not None and self.port.startswith(ARC2):
            # an ArC TWO: its profile; no fine-tuning unless asked (host mode: every VMM of
            # every training clip is a USB round trip, and the model holds as trained)
            for name, value in (("board_profile", ARC2_PROFILE), ("finetune", False)):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        if self.finetune is None and not available("torch"):
            object.__setattr__(self, "finetune", False)  # the light install: said in run_demo
        for name in ("bits", "board_profile", "finetune"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))

    def data_spec(self) -> "DataSpec":
        from imssa_hw.data import DataSpec

        return DataSpec.default(self.task, seed=self.seed, **self.data)

    def recipe(self, profile: "BoardProfile") -> "ModelRecipe":
        """The model the demo deploys, trained for `profile` (this demo's board profile)."""
        from imssa_hw.workflows.model_cache import ModelRecipe

        return ModelRecipe(self.data_spec(), task_model(self.task, bits=self.bits, **self.model),
                           self.epochs, profile, self.hardware_aware)


@contextmanager
def _stage(name: str, timings: dict, echo: Callable[[str], None]) -> Iterator[None]:
    echo(f"[{name}]")
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 2)
    echo(f"  {name} done in {timings[name]:.1f} s")


def run_demo(out: Path, settings: DemoSettings, echo: Callable[[str], None] = print) -> dict:
    """Run the whole flow into `out`; returns the summary (also written as summary.json)."""
    from imssa_hw.board import load_board_profile
    from imssa_hw.drivers.board import Board
    from imssa_hw.drivers.smu import open_smu
    from imssa_hw.emulator.process import start_emulator
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.workflows.model_cache import ModelSource, trained_model

    profile = load_board_profile(settings.board_profile)  # a bad name: one line, nothing written
    if settings.finetune or settings.retrain:
        require("torch")  # before any work: training and fine-tuning need it
    elif TASK_DEMOS[settings.task].finetune and not available("torch"):
        echo(f"fine-tuning off: {missing('torch')}")
    if settings.port is not None:
        _check_port(settings.port)  # before training: a typo costs nothing
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with _stage("train", timings, echo):
        model = trained_model(settings.recipe(profile), retrain=settings.retrain)
        trained = model.summary
        model_path = out / "model.pt"
        shutil.copyfile(model.path, model_path)
        echo(f"  {settings.task}, {settings.bits}-bit: software accuracy "
             f"{100 * trained['software_accuracy']:.2f} % ({model.source} model)")
    ckpt = load_checkpoint(model_path)
    if settings.port is not None:
        settings, run = _run_on_port(ckpt, model_path, profile, out, settings, timings, echo)
    else:
        geo = profile.geometry
        with _stage("emulate", timings, echo):
            board_seed = settings.seed if settings.board_seed is None else settings.board_seed
            emu = start_emulator(out / "emulator", seed=board_seed, smu=True, arrays=geo.arrays,
                                 rows=geo.rows, cols=geo.cols, **settings.emulator)
            echo(f"  emulated board on {emu.port}, SMU at {emu.smu_resource}")
        try:
            with Board.open(emu.port) as board, open_smu(emu.smu_resource) as smu:
                run = run_on_board(board, smu, ckpt, model_path, profile, out, settings,
                                   timings, echo, finetune=settings.finetune)
        finally:
            emu.stop()
    before, p = run.before, run.programmed.report
    inferred = run.inferred or before  # the last inference: after tuning, else as trained
    software = before["software_accuracy"]  # the quantized model as trained, ideal kernels
    summary = {
        "task": settings.task, "dataset": settings.data_spec().dataset,
        "speakers_test": trained.get("speakers_test"), "bits": settings.bits,
        "mode": settings.mode, "hardware_aware": settings.hardware_aware,
        "board_profile": profile.name, "scales_from": run.deployment.summary["scales_from"],
        "software_accuracy": software,
        "loop_accuracy": trained.get("loop_accuracy"),
        "hardware_accuracy": inferred["hardware_accuracy"],
        "hardware_accuracy_before_finetune": before["hardware_accuracy"],
        "agreement_before_finetune": before["agreement"],
        "rms_logit_error_before_finetune": before["rms_logit_error"],
        "disagreement_margins_before_finetune": before["disagreement_margins"],
        "accuracy_loss_points": round(100 * (software - inferred["hardware_accuracy"]), 3),
        "finetuned": run.inferred is not None,
        "finetuned_software_accuracy": inferred["software_accuracy"],
        "agreement": inferred["agreement"],
        "n_test": inferred["n_samples"], "yield_working": p["yield_working"],
        "mean_pulses_per_device": p["mean_pulses_per_device"],
        "read_error_before": run.calibration_run.report.get("read_error_before"),
        "read_error_after": run.calibration_run.report.get("read_error_after"),
        "arrays_used": run.deployment.summary["arrays_used"], "steps_per_s": inferred["steps_per_s"],
        "timings_s": timings, "total_time_s": round(sum(timings.values()), 2),
        "model_source": model.source, "model_cached": model.source != ModelSource.TRAINED,
        "settings": settings.to_dict(),
    }
    write_json(out / "summary.json", summary)
    return summary


def _check_port(port: str) -> None:
    """What can be known of a port without opening it: an arc2:// port's parts, a device
    path's existence; `BadInput` otherwise."""
    from imssa_hw.drivers.arc2 import parse_port
    from imssa_hw.errors import BadInput

    if port.startswith(ARC2):
        parse_port(port)
    elif port.startswith("/") and not Path(port).exists():
        raise BadInput(f"{port}: no such serial device")


def _run_on_port(ckpt, model_path: Path, profile, out: Path, settings: DemoSettings,
                 timings: dict, echo: Callable[[str], None]) -> tuple[DemoSettings, "BoardRun"]:
    """The stages on the board `settings.port` names (host mode when it has no on-board
    loop); an ArC TWO's programming history is exported as arc2control HDF5 too."""
    from imssa_hw.drivers.open import open_board
    from imssa_hw.drivers.smu import open_smu
    from imssa_hw.hil.selftest import before_programming

    with _stage("connect", timings, echo):
        board = open_board(settings.port)
        wiring = f", mapping {board.info.mapping}" if board.info.mapping else ""
        echo(f"  {board.info.board_id} ({board.info.firmware}{wiring}) on {settings.port}")
        try:  # first contact: the self-test before the calibration pulses every device
            profile.check_board(board.info.spec, board.info.board_id)  # before any pulse
            checked = before_programming(board, pulses=True)
        except BaseException:
            board.close()
            raise
        echo(f"  self-test: {', '.join(c.name for c in checked.checks if c.passed)} passed")
        if settings.mode is InferenceMode.ONBOARD and not board.capabilities.on_board_loop:
            settings = replace(settings, mode=InferenceMode.HOST)
            echo("  the board has no on-board loop: inference in host mode")
    with board, (open_smu(settings.smu) if settings.smu else nullcontext()) as smu:
        run = run_on_board(board, smu, ckpt, model_path, profile, out, settings, timings, echo,
                           finetune=settings.finetune)
    if settings.port.startswith(ARC2):
        from imssa_hw.programming.export import export_journal

        with _stage("export", timings, echo):
            written = export_journal(out / "program" / "journal.jsonl", out / "program" / "log.h5")
            echo(f"  arc2control HDF5: {', '.join(map(str, written))}")
    return settings, run


@dataclass
class BoardRun:
    """What the stages on a board produced (`run_on_board`)."""

    calibration_run: Any
    """The `CalibrationRun` (its `calibration` is the `Calibration`)."""
    deployment: Any
    programmed: Any
    """The `ProgramResult`."""
    before: dict
    """The inference report with the digital parts as trained."""
    inferred: dict | None
    """The inference report after chip-in-the-loop fine-tuning (None: not fine-tuned)."""


def run_on_board(board, smu, ckpt, model_path: Path, profile, out: Path, settings: DemoSettings,
                 timings: dict, echo: Callable[[str], None] = print,
                 finetune: bool = True) -> BoardRun:
    """The demo's stages on a connected board (any `BoardLike`; `smu` None: on-array
    calibration): calibrate -> compile for `profile` -> program -> infer, then fine-tune and
    infer again unless `finetune` is False. Writes what each command would into `out`."""
    from imssa_hw.calibration.outputs import write_outputs as write_calibration
    from imssa_hw.calibration.procedure import calibrate
    from imssa_hw.compiler import compile_checkpoint, save_deployment
    from imssa_hw.compiler.artifact import copy_checkpoint
    from imssa_hw.compiler.plots import write_targets_plot
    from imssa_hw.hil.inference import current_correction, load_test_set, run_inference
    from imssa_hw.hil.inference_plots import write_inference_outputs
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.programming import program_deployment
    from imssa_hw.programming.outputs import write_program_outputs

    with _stage("calibrate", timings, echo):
        calibration_run = calibrate(board, smu)
        write_calibration(calibration_run, out / "calib", out / "calibrate.json",
                          plots=settings.plots)
        r = calibration_run.report
        error = "read error" if smu is not None else "column spread (on-array references)"
        before, after = ((r["read_error_before"], r["read_error_after"]) if smu is not None
                         else (r["column_spread_before"], r["column_spread_after"]))
        echo(f"  {error} {100 * before:.2f} % -> {100 * after:.2f} %, "
             f"{len(calibration_run.defects.stuck)} stuck devices")
    with _stage("compile", timings, echo):
        dep = compile_checkpoint(
            ckpt, profile, calibration_run.defects, seed=settings.seed,
            column_offsets_codes=calibration_run.calibration.offset_codes(profile.read.adc_bits))
        save_deployment(dep, out / "deploy")
        copy_checkpoint(model_path, out / "deploy")
        write_targets_plot(dep, out / "deploy", settings.plots)
        echo(f"  {dep.summary['arrays_used']} arrays, {dep.summary['cells_used']} cells, "
             f"ideal error {dep.summary['ideal_max_abs_error']:.2g}")
    with _stage("program", timings, echo):
        programmed = program_deployment(board, dep, calibration=calibration_run.calibration,
                                        journal=out / "program" / "journal.jsonl")
        write_program_outputs(programmed, out / "program", out / "program.json",
                              defects=out / "calib" / "defects.json", plots=settings.plots)
        p = programmed.report
        echo(f"  yield {100 * p['yield_working']:.2f} % of working devices, "
             f"{p['mean_pulses_per_device']:.2f} pulses per device")
    features, labels, names = load_test_set(ckpt)
    correct = current_correction(calibration_run.calibration, board)
    with _stage("infer", timings, echo):
        result = run_inference(board, dep, ckpt, features, labels, settings.mode, correct)
        before = result.report(len(names))
        echo(f"  hardware {100 * before['hardware_accuracy']:.2f} % with the "
             f"digital parts as trained")
    if not finetune:
        write_inference_outputs(result, before, names, out, out / "infer.json",
                                plots=settings.plots)
        return BoardRun(calibration_run, dep, programmed, before, None)
    from imssa_hw.hil.finetune import finetune_on_board, kept_epoch  # torch: only here
    from imssa_hw.model.checkpoint import FINETUNED_FILE

    with _stage("finetune", timings, echo):
        tuned_path = out / "deploy" / FINETUNED_FILE
        tuned = finetune_on_board(board, dep, ckpt, tuned_path, calibration_run.calibration)
        echo(f"  hardware model on the training split: "
             f"{100 * tuned['accuracy_before']:.2f} % -> "
             f"{100 * tuned['accuracy_after']:.2f} % ({kept_epoch(tuned)})")
    with _stage("infer-finetuned", timings, echo):
        result = run_inference(board, dep, load_checkpoint(tuned_path), features, labels,
                               settings.mode, correct)
        inferred = result.report(len(names))
        write_inference_outputs(result, inferred, names, out, out / "infer.json",
                                plots=settings.plots)
    return BoardRun(calibration_run, dep, programmed, before, inferred)


def summary_table(summary: dict) -> str:
    """The demo's closing table."""
    tuned = summary.get("finetuned", True)
    rows = [("software accuracy (quantized model)", f"{100 * summary['software_accuracy']:.2f} %"),
            ("hardware accuracy, as trained",
             f"{100 * summary['hardware_accuracy_before_finetune']:.2f} %"),
            ("agreement with software, as trained",
             f"{100 * summary['agreement_before_finetune']:.2f} %")]
    if tuned:
        rows.append(("hardware accuracy, chip-in-the-loop tuned",
                     f"{100 * summary['hardware_accuracy']:.2f} %"))
    rows += [(f"loss on hardware ({'tuned' if tuned else 'as trained'})",
              f"{summary['accuracy_loss_points']:.2f} points"),
             ("programming yield (working devices)", f"{100 * summary['yield_working']:.2f} %"),
            ("pulses per device", f"{summary['mean_pulses_per_device']:.2f}"),
            *([("read error before/after calibration",
                f"{100 * summary['read_error_before']:.2f} % / "
                f"{100 * summary['read_error_after']:.2f} %")]
              if summary.get("read_error_before") is not None else []),
            (f"inference ({summary['mode']} loop)", f"{summary['steps_per_s']:.0f} steps/s")]
    rows += [(f"time: {k}", f"{v:.1f} s") for k, v in summary["timings_s"].items()]
    rows.append(("time: total", f"{summary['total_time_s']:.1f} s"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
