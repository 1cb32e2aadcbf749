"""The `imssa-hw` command group.

Subcommands live in their own modules and are imported only when run, so that
`imssa-hw board info` does not pay for importing torch. Register a command by adding
one line to `COMMANDS`: its name, then "module:attribute" inside `imssa_hw.cli`.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from imssa_hw import __version__
from imssa_hw.cli.interrupt import Interrupted, kept_on_interrupt
from imssa_hw.errors import EXIT_BAD_INPUT, EXIT_HARDWARE, BadInput, HardwareError
from imssa_hw.extras import EXTRAS, missing

COMMANDS: dict[str, str] = {
    "board": "board:board",
    "budget": "budget:budget",
    "emulate": "emulate:emulate",
    "compile": "compile:compile_command",
    "train": "train:train",
    "import": "import_model:import_command",
    "program": "program:program",
    "calibrate": "calibrate:calibrate",
    "finetune": "finetune:finetune",
    "infer": "infer:infer",
    "journal": "journal:journal",
    "demo": "demo:demo",
    "sweep": "sweep:sweep",
}


class BadInputError(click.ClickException):
    """Shown as one line `Error: ...` with exit code 2, the convention for bad input."""

    exit_code = EXIT_BAD_INPUT


class HardwareFailure(click.ClickException):
    """Shown as one line `Error: ...` with exit code 3: the board, link or instrument failed."""

    exit_code = EXIT_HARDWARE


class Interruption(click.ClickException):
    """Shown as one line `Error: interrupted (SIGNAL): what was kept ...`, exit code 128 +
    the signal's number, as a shell reports a command a signal ended."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"interrupted ({signal_name}): {kept_on_interrupt()}")
        self.exit_code = 128 + signal.Signals[signal_name].value


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        module = importlib.import_module(f"imssa_hw.cli.{module_name}")
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:  # a bad option value: one line, without the usage
            raise BadInputError(exc.format_message()) from None
        except click.UsageError as exc:  # an unknown option, a missing argument: one line too
            where = exc.ctx.command_path if exc.ctx is not None else "imssa-hw"
            raise BadInputError(f"{exc.format_message()} (see {where} --help)") from None
        except BadInput as exc:  # first: a missing port is both
            raise BadInputError(str(exc)) from None
        except HardwareError as exc:
            raise HardwareFailure(str(exc)) from None
        except ModuleNotFoundError as exc:  # an optional dependency (training without torch)
            if exc.name not in EXTRAS:
                raise
            raise BadInputError(missing(exc.name)) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (`Interrupted`)
            raise Interruption(exc.signal_name if isinstance(exc, Interrupted)
                               else "SIGINT") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imssa-hw")
def cli() -> None:
    """Deploy S4D state-space models on memristive crossbar hardware.

    The flow: train (S4D + quantization-aware training) -> compile (conductance
    targets, placement, schedule) -> calibrate -> program (write-verify) -> infer.
    `emulate` starts an emulated board; `demo` runs the whole flow on one.
    """


def main() -> None:
    """Console-script entry point: SIGTERM and SIGHUP end a command as Ctrl-C does (its
    cleanup runs, one line says what was kept), unless they were ignored when it started."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup` keeps ignoring SIGHUP
            signal.signal(sig, Interrupted.raise_for)
    cli(prog_name="imssa-hw")


if __name__ == "__main__":
    sys.exit(main())
