"""Options and helpers shared by several commands."""

from __future__ import annotations

import math
import os
import platform
import socket
from functools import partial
from pathlib import Path
from typing import Callable

import click

from imssa_hw.errors import BadInput
from imssa_hw.files import check_writable, write_json
from imssa_hw.model.config import MAX_BITS, RANGES, ModelConfig

# One rule per kind of value, for every command: a value outside its bounds is refused when
# the command line is parsed, before any work, in one line naming the option and the bounds
# (exit 2; main.LazyGroup drops click's usage lines).

MAX_WAIT_S = 3600.0
"""The longest wait an option may ask for (timeouts, settling, delays, latency): an hour."""


class FiniteFloat(click.FloatRange):
    """A finite float within [min, max] (NaN and infinities refused: no option gives them a
    meaning); with `zero_ok`, 0 too (an option's "off")."""

    def __init__(self, min: float, max: float, min_open: bool = False, max_open: bool = False,
                 zero_ok: bool = False) -> None:
        super().__init__(min, max, min_open=min_open, max_open=max_open)
        self.zero_ok = zero_ok

    def convert(self, value, param, ctx) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if self.zero_ok and number == 0:
            return 0.0
        if math.isnan(number):
            self.fail(f"nan is not in the range {self._describe_range()}.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        low = f"{self.min:g}{'<' if self.min_open else '<='}"
        high = f"{'<' if self.max_open else '<='}{self.max:g}"
        return f"{'0 or ' if self.zero_ok else ''}{low}x{high}"


SEED = click.IntRange(0, 2**32 - 1)
"""A random seed (numpy's and torch's generators take 0..2**32-1 alike)."""

UNCALIBRATED = ("no --calibration: the column currents are not corrected for the TIA gains and "
                "offsets, which can cost many points; run `imssa-hw calibrate` and pass its folder")
"""The one-line warning of a command that reads the board without a calibration."""


def warn_uncalibrated(report: dict) -> dict:
    """Warn on stderr (one line) and in `report` (`calibrated` false, `warnings`) that the board
    is read without a calibration; returns the report."""
    click.echo(f"warning: {UNCALIBRATED}", err=True)
    return {**report, "calibrated": False,
            "warnings": [*report.get("warnings", []), UNCALIBRATED]}


class OutputPath(click.Path):
    """A file (`folder=False`) or folder the command will write: checked when the command line
    is parsed (files.check_writable), so that nothing is lost after minutes of work. A folder
    that `holds` a file of that name refuses a path with the file's suffix (`--out model.pt`
    where the folder is meant)."""

    def __init__(self, folder: bool = False, holds: str | None = None) -> None:
        super().__init__(file_okay=not folder, dir_okay=folder, path_type=Path)
        self.folder, self.holds = folder, holds

    def convert(self, value, param, ctx) -> Path:
        try:
            check_writable(value, self.folder)  # the text: "" would be Path(".")
        except BadInput as exc:
            self.fail(str(exc), param, ctx)
        path = super().convert(value, param, ctx)
        if self.holds and path.suffix == Path(self.holds).suffix:
            self.fail(f"{value} is a file name, but --out is the folder this command writes "
                      f"{self.holds} into (e.g. {path.with_suffix('')})", param, ctx)
        return path


def profile_settings(ctx, param, texts: tuple[str, ...]) -> dict:
    """Callback of --set SECTION.KEY=VALUE (repeatable): the overrides as a dict; a number that is
    not finite is refused here (the profile's own bounds are checked when it is loaded)."""
    from imssa_hw.emulator.profile import parse_override

    settings = dict(parse_override(text) for text in texts)
    for key, value in settings.items():
        if any(isinstance(v, float) and not math.isfinite(v)
               for v in (value if isinstance(value, list) else [value])):
            raise click.BadParameter(f"{key}={value}: not a finite number", ctx, param)
    return settings


class Port(click.IntRange):
    """A TCP port to listen on, on 127.0.0.1: 0..65535 (0: the system picks a free one), and free
    now (a bind test)."""

    name = "port"

    def __init__(self) -> None:
        super().__init__(0, 65535)

    def convert(self, value, param, ctx) -> int:
        port = super().convert(value, param, ctx)
        if port:
            try:
                socket.create_server(("127.0.0.1", port)).close()
            except OSError as exc:
                self.fail(f"127.0.0.1:{port} is not free ({os.strerror(exc.errno)})", param, ctx)
        return port


def _parse_bits(ctx, param, value: str | None, float_ok: bool = True) -> int | None:
    if value is None:  # not given and no default: the command's choice
        return None
    if value.lower() == "float":
        if float_ok:
            return None
        raise BadInput(f"--bits must be 1..{MAX_BITS} here (a quantized model is deployed), "
                       f"got {value!r}")
    try:
        bits = int(value)
    except ValueError:
        bits = 0
    if not 1 <= bits <= MAX_BITS:
        raise BadInput(f"--bits must be 1..{MAX_BITS} or 'float', got {value!r}")
    return bits


def bits_option(default: str | None = "2",
                default_help: str = "") -> Callable[[Callable], Callable]:
    """--bits: 1..MAX_BITS, or 'float' (None). With `default` None the bits must be given as a
    number, and None means not given: the command's default, which `default_help` names."""
    quantized = default is None
    return click.option(
        "--bits", default=default, show_default=not quantized,
        callback=partial(_parse_bits, float_ok=not quantized),
        help=f"Bits per device for the S4D kernels, 1..{MAX_BITS}" + (
            f". Default: {default_help}." if quantized else ", or 'float' (no quantization)."))


def plots_option(files: str) -> Callable[[Callable], Callable]:
    """--plots/--no-plots (default on): whether the command writes its PNG `files`. Off, it
    writes none and removes those of an earlier run from the folder, so that no plot there
    shows another run; the reports are the same either way."""
    return click.option("--plots/--no-plots", default=True, show_default=True,
                        help=f"Write {files}. --no-plots: none, and those of an earlier run "
                             "in the folder are removed.")


A_RANGE_HELP = (
    "Fixed dynamic range of the discretized A: every mode stays within |Abar| <= a_range "
    "and strictly inside the unit circle (1 is plain S4D, the paper's range, where ternary "
    "kernels are memoryless; below 1 adds a leak that keeps conductance errors from building up "
    "over the recurrence, docs/model.md).")


def a_range_option(default: float | None = ModelConfig.a_range):
    """--a-range; with default None the task's (config.TASK_MODELS)."""
    return click.option("--a-range", type=FiniteFloat(0.1, 1.0), default=default,
                        show_default=default is not None,
                        help=A_RANGE_HELP + ("" if default is not None else
                                             " Default: the task's (zero-one 0.75, digits and "
                                             "hd20 0.95)."))


ranges_option = click.option(
    "--ranges", type=click.Choice([r.replace("_", "-") for r in RANGES]),
    default=ModelConfig.ranges.replace("_", "-"), show_default=True,
    callback=lambda ctx, param, value: value.replace("-", "_"),
    help="Steps of Bbar and C: per-matrix (each spans the whole conductance window) or shared "
    "(on Abar's fixed grid, one dynamic range for every kernel parameter, as in the paper).")


def parse_ids(text: str | None, option: str) -> list[int] | None:
    """'0,1' -> [0, 1] (distinct non-negative integers); None stays None."""
    if text is None:
        return None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"{option} must be comma-separated integers like 0,1, got {text!r}") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise BadInput(f"{option} must list distinct non-negative integers, got {text!r}")
    return ids



def board_training_options(default_profile: str | None = "board-default",
                           default_help: str = "") -> Callable[[Callable], Callable]:
    """--board-profile and --hardware-aware, for commands that train. With `default_profile`
    None, --board-profile is None when not given: the command's default, which `default_help`
    names."""
    def decorate(command: Callable) -> Callable:
        command = click.option(
            "--hardware-aware/--no-hardware-aware", default=True, show_default=True,
            help="Train the last quarter of the epochs with every recurrence run as the board "
            "runs it: row DACs, column ADCs at the TIA range the compiler will choose, the "
            "one-step output delay, the columns' offsets, and the errors of the profile's "
            "[errors] table (--board-profile); the software model trains beside it and is kept "
            "close to it, so that board and software decide alike. On by default: on 10 "
            "emulated boards it lost less than QAT alone, most after a simulated day "
            "(docs/model.md).")(command)
        return click.option(
            "--board-profile", default=default_profile, show_default=default_profile is not None,
            help="The board the model is for (a shipped profile name or a TOML file): the "
            "checkpoint keeps the state scales and TIA ranges chosen for it on the training "
            "set, which the compiler then uses."
            + ("" if default_profile is not None else f" Default: {default_help}."))(command)
    return decorate


def epoch_label(record: dict | None) -> str | None:
    """A training epoch's record as a progress bar shows it."""
    return record and (f"{record['phase']} loss {record['loss']:.3f} "
                       f"val {record['val_accuracy']:.3f}")


def write_run_report(report: Path | None, result: dict, checkpoint: Path) -> None:
    """The JSON report of a command that wrote a checkpoint (train, import), if asked for."""
    if report:
        write_json(report, {**result, "checkpoint": str(checkpoint),
                            "machine": platform.machine()})
