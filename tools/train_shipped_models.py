"""(Re)make a model shipped in imssa_hw/models/ (a maintainer's tool, not run by the product).

Trains the task's model with the demo's defaults (`workflows.demo.DemoSettings(task=...)`: the
task's data with seed 0, model, bits, epochs and board profile, hardware-aware), writes the
checkpoint `<task>.pt` and its training report `<task>.json` (as `imssa-hw train --report`
writes it) atomically, and records the checkpoint's digest and the `ModelRecipe.key` it was
made with in index.json, which is how `imssa-hw demo` knows the model fits its settings.
Re-run it whenever tests/test_shipped_models.py says a key no longer matches. From the
repository root (a fresh cache keeps it from other runs' data):

    IMSSA_HW_CACHE=/tmp/imssa-ship python tools/train_shipped_models.py --task zero-one

`--board PROFILE` trains the task's model for another board profile (shipped as
`<task>-<profile>`, e.g. zero-one-board-arc2, the model `demo --port arc2://...` starts from).

`--refit-scales` trains nothing: it saves the shipped model again with its loop scales chosen
as `save_model` chooses them now (the same weights, its training set, its board), and records
that in its report and the index.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

from imssa_hw import __version__
from imssa_hw.board import load_board_profile
from imssa_hw.files import atomic_path, write_json
from imssa_hw.workflows.demo import TASK_DEMOS, DemoSettings
from imssa_hw.workflows.model_cache import INDEX, SHIPPED, shipped_models

SHIPPED_TASKS = ("zero-one", "digits", "custom")


def ship(settings: DemoSettings, folder: Path, command: str) -> dict:
    """Train `settings`' model into `folder` as `<task>.pt` with its report `<task>.json`,
    and list it in the folder's index; returns the report."""
    name = _name(settings)
    recipe = settings.recipe(load_board_profile(settings.board_profile))

    def epoch(record: dict) -> None:
        print(f"  epoch {record['epoch']}: {record['phase']} loss {record['loss']:.3f} "
              f"val {record['val_accuracy']:.3f}", file=sys.stderr, flush=True)

    checkpoint = folder / f"{name}.pt"
    with atomic_path(checkpoint) as tmp:
        result = recipe.train(tmp, epoch_progress=epoch)
    report = {**result, "checkpoint": checkpoint.name, "machine": platform.machine(),
              "version": __version__, "command": command}
    write_json(folder / f"{name}.json", report)
    _list(folder, name, {"checkpoint": checkpoint.name, "report": f"{name}.json",
                         "digest": result["digest"], "command": command, "version": __version__,
                         "key": recipe.key(), "task": settings.task,
                         "board_profile": settings.board_profile})
    return report


def _list(folder: Path, name: str, entry: dict) -> None:
    """Make `entry` the index's entry for `name`; every file of it readable by all."""
    models = {**shipped_models(folder), name: entry}
    write_json(folder / INDEX, {"format": "imssa-hw-shipped-models",
                                "models": dict(sorted(models.items()))})
    for path in (folder / entry["checkpoint"], folder / entry["report"], folder / INDEX):
        path.chmod(0o644)  # package data, read by every user (atomic writes make them 0600)


def _name(settings: DemoSettings) -> str:
    """The shipped name of the model of `settings`: its task, and its board when that is not
    the task's demo board."""
    if settings.board_profile == TASK_DEMOS[settings.task].board_profile:
        return settings.task
    return f"{settings.task}-{settings.board_profile}"


def refit_scales(name: str, folder: Path, command: str) -> dict:
    """Save the shipped model `name` again with the loop scales training chooses now (same
    weights, its training set and board: measured, state gains fitted); returns its updated
    report, whose `loop_accuracy` is then at those scales."""
    from imssa_hw.data import DataSpec, load_data
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.training.classifier import model_from_checkpoint, save_model
    from imssa_hw.training.hardware_aware import fit_state_gains, model_scales
    from imssa_hw.training.trainer import accuracy_through_loop

    entry = shipped_models(folder)[name]
    checkpoint = folder / entry["checkpoint"]
    ckpt = load_checkpoint(checkpoint)
    data = load_data(DataSpec.of_checkpoint(ckpt.meta))
    board = load_board_profile(entry["board_profile"])
    model = model_from_checkpoint(ckpt)
    scales = fit_state_gains(model, data.x_train, board, model_scales(model, data.x_train, board))
    loop = accuracy_through_loop(model, board, scales, data.x_test, data.y_test)
    meta = {**{k: v for k, v in ckpt.meta.items() if k not in ("signal_ranges", "loop_scales")},
            "loop_accuracy": loop}
    with atomic_path(checkpoint) as tmp:
        digest = save_model(tmp, model, meta, range_features=data.x_train, board=board,
                            scales=scales)
    report_path = folder / entry["report"]
    report = {**json.loads(report_path.read_text()), "digest": digest, "loop_accuracy": loop,
              "scales_command": command, "scales_version": __version__}
    write_json(report_path, report)
    recipe = DemoSettings(task=entry["task"], board_profile=entry["board_profile"]).recipe(board)
    _list(folder, name, {**entry, "digest": digest, "key": recipe.key()})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=SHIPPED_TASKS, required=True)
    parser.add_argument("--board", default=None,
                        help="board profile (default: the task's demo board)")
    parser.add_argument("--refit-scales", action="store_true",
                        help="train nothing: save the shipped model again with its loop scales "
                             "chosen as save_model chooses them now")
    args = parser.parse_args()
    command = f"python tools/train_shipped_models.py --task {args.task}" + (
        f" --board {args.board}" if args.board else "") + (
        " --refit-scales" if args.refit_scales else "")
    settings = DemoSettings(task=args.task, board_profile=args.board)
    if args.refit_scales:
        from imssa_hw.model.checkpoint import load_checkpoint

        report = refit_scales(_name(settings), SHIPPED, command)
        path = SHIPPED / report["checkpoint"]
        layers = load_checkpoint(path).meta["loop_scales"]["layers"]
        gains = "; ".join(f"{min(g):g}-{max(g):g} (median {statistics.median(g):g})"
                          for g in (layer["state_gain"] for layer in layers))
        print(f"{_name(settings)}: loop scales refitted, state gains per kernel {gains}; wrote "
              f"{path}")
        return
    report = ship(settings, SHIPPED, command)
    print(f"{args.task}: {report['bits']}-bit software accuracy "
          f"{100 * report['software_accuracy']:.2f} % on {report['n_test']} test samples, "
          f"{report['wall_time_s']:.0f} s of training; wrote {SHIPPED / report['checkpoint']}")


if __name__ == "__main__":
    main()
