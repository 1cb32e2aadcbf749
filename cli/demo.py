"""`imssa-hw demo`: the whole flow on an emulated board, in one folder."""

from __future__ import annotations

import time
from pathlib import Path

import click

from imssa_hw.cli.interrupt import on_interrupt
from imssa_hw.cli.options import (SEED, OutputPath, bits_option, board_training_options,
                                  plots_option, profile_settings)
from imssa_hw.errors import BadInput
from imssa_hw.hil.mode import InferenceMode
from imssa_hw.workflows.demo import TASK_DEMOS

TINY_DATA = {"n_train_per_class": 12, "n_test_per_class": 6, "mix_synthetic": 0,
             "mix_flite": False}
"""--tiny: a few clips per class, no synthetic speech or flite voices mixed in (still
augmented)."""


def _per_task(attribute: str) -> str:
    """The tasks' demo defaults of `attribute` for the help, e.g. 'zero-one 2, digits 4'."""
    return "the task's (" + ", ".join(f"{task} {getattr(d, attribute)}"
                                      for task, d in TASK_DEMOS.items()) + ")"


@click.command()
@click.option("--out", type=OutputPath(folder=True), default=None,
              help="Folder for everything the demo writes (default: a new imssa-demo-* folder "
              "in the working directory).")
@click.option("--task", type=click.Choice(list(TASK_DEMOS)), default="zero-one",
              show_default=True, help="zero-one, digits, hd20: spoken digits; custom: the "
              "handwritten UCI digits shipped with imssa-hw, 8 rows of 8 pixels (not speech).")
@bits_option(None, _per_task("bits"))
@click.option("--mode", type=click.Choice([m.value for m in InferenceMode]),
              default=InferenceMode.ONBOARD.value,
              show_default=True, help="Inference loop: on the board, or driven by the host.")
@click.option("--epochs", type=click.IntRange(1, 10000), default=40, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the data, the model and the emulated board.")
@click.option("--board-seed", type=SEED, default=None,
              help="Seed of the emulated board alone (default: --seed): the same model on "
              "another board.")
@click.option("--emulator-profile", default=None,
              help="The emulated board's device profile: a TOML file or a shipped one "
              "(emulator-default, emulator-harsh); see `imssa-hw emulate --help`.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              callback=profile_settings,
              help="Override one emulator profile value, e.g. defects.stuck_on_fraction=0.02 "
              "(repeatable).")
@click.option("--tiny", is_flag=True,
              help="A small model and data set: a smoke test, not a measurement.")
@click.option("--retrain", is_flag=True,
              help="Train the model anew (and cache it) even when a shipped or cached model was "
              "made with exactly these settings.")
@click.option("--finetune/--no-finetune", default=None,
              help="After inference as trained, fine-tune the digital parts against the "
              "programmed conductances (chip-in-the-loop) and infer again. Default: "
              + _per_task("finetune").replace("True", "on").replace("False", "off")
              + "; the ten-digit model holds on the board as trained, and tuning it lost "
              "points on the test speaker.")
@click.option("--port", default=None,
              help="Run on this board instead of an emulated one: a serial port, pyserial URL "
              "or arc2://ID?firmware=PATH[&mapping=NAME] (see `imssa-hw board --help`). An "
              "ArC TWO compiles for board-arc2 by default (the shipped zero-one model for it), "
              "infers in host mode, does not fine-tune unless --finetune, and gets its "
              "programming history as arc2control HDF5 (program/log.h5).")
@click.option("--smu", default=None,
              help="With --port: the SMU's VISA resource for calibration (default: on-array "
              "references).")
@plots_option("every stage's PNGs (calibration, targets, programming, inference)")
@board_training_options(None, _per_task("board_profile"))
def demo(out, task, bits, mode, epochs, seed, board_seed, emulator_profile, overrides, tiny,
         retrain, finetune, port, smu, plots, board_profile, hardware_aware):
    """Train (or reuse) a model, start an emulated board (or connect to --port), calibrate,
    compile with the defect map, program with write-verify, run the test set through the board
    (and, for zero-one, fine-tune and run it again), stop the board, and print software against
    hardware accuracy. Writes summary.json and every stage's files.

    The model: one shipped with imssa-hw when it was made with exactly these settings (a
    task's defaults: --seed 0, 40 epochs, hardware-aware; imssa_hw/models/README.md lists
    them), else the one cached for these settings ($IMSSA_HW_CACHE), else trained now and
    cached; --retrain always trains. summary.json's model_source says which (shipped, cached,
    trained)."""
    from imssa_hw.workflows.demo import DemoSettings, run_demo, summary_table
    from imssa_hw.emulator.profile import load_emulator_profile
    from imssa_hw.files import check_writable

    if port is None and smu is not None:
        raise BadInput("--smu needs --port (an emulated board brings its own SMU)")
    emulator_only = [name for name, value in (("--board-seed", board_seed),
                                              ("--emulator-profile", emulator_profile),
                                              ("--set", overrides)) if value]
    if port is not None and emulator_only:
        raise BadInput(f"{', '.join(emulator_only)} set(s) the emulated board, not "
                               f"--port")
    out = out or Path(f"imssa-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable(out, folder=True)
    load_emulator_profile(emulator_profile, overrides)  # a bad profile or override: one line, now
    board = {"hardware_aware": hardware_aware, "board_profile": board_profile,
             "board_seed": board_seed, "retrain": retrain, "finetune": finetune,
             "emulator": {"profile": emulator_profile, "settings": overrides},
             "port": port, "smu": smu, "plots": plots}
    settings = DemoSettings(task=task, bits=bits, seed=seed, epochs=epochs, mode=InferenceMode(mode),
                            **board)
    if tiny:
        settings = DemoSettings(task=task, bits=bits, seed=seed, epochs=min(epochs, 3),
                                model={"h": 4, "n": 4, "n_layers": 1}, mode=InferenceMode(mode),
                                data=TINY_DATA,
                                **board)
    on_interrupt(f"the stages finished so far are in {out}/ (the emulated board is stopped); "
                 f"run the demo again to start over (a trained model is kept in the cache)")
    summary = run_demo(out, settings, echo=click.echo)
    click.echo("")
    click.echo(summary_table(summary))
    click.echo(f"\nwrote {out}/ (summary.json, model, calibration, deployment, program and "
               f"inference reports{' and plots' if plots else ''})")
