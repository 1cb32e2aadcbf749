"""`imssa-hw import`: an S4D model trained with the reference implementation, as our checkpoint."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click

from imssa_hw.cli.options import (SEED, FiniteFloat, OutputPath, bits_option,
                                  board_training_options, parse_ids,
                                  epoch_label, write_run_report)
from imssa_hw.data.tasks import SEQUENCE_DATASETS
from imssa_hw.errors import BadInput
from imssa_hw.model.checkpoint import CHECKPOINT_FILE


DATASET_HELP = (
    "The data the model classifies: arrays, sequences in an .npz (--data-root), as the model "
    "saw them (raw: imssa-hw folds its normalization into the encoder); uci-digits, the shipped "
    "8x8 UCI digits (8 rows of 8 pixels). Its training split calibrates the quantized model, "
    "its test split measures it; infer, finetune and budget read the same data again.")
CLASSES_HELP = "Subset of the data's class indices, e.g. 0,1 (the model must have as many outputs)."


@click.command("import")
@click.argument("state_dict", type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Choice(SEQUENCE_DATASETS), default="arrays",
              show_default=True, help=DATASET_HELP)
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="arrays: the .npz file (x_train, y_train, x_test, y_test, class_names).")
@click.option("--classes", default=None, help=CLASSES_HELP)
@bits_option(None, "4")
@click.option("--a-range", type=FiniteFloat(0.1, 1.0), default=1.0, show_default=True,
              help="Fixed dynamic range of the discretized A on the crossbar: |Abar| <= a-range. "
              "1 (plain S4D) holds every stable model; a smaller one gives a finer grid but "
              "refuses a model with a pole outside it.")
@click.option("--finetune-epochs", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="After post-training quantization, fine-tune the whole model this many "
              "epochs quantization-aware, the last quarter through the board's loop "
              "(--hardware-aware); 0 keeps the post-training quantized model.")
@click.option("--prenorm", is_flag=True,
              help="Say the model was trained with prenorm=True (example.py --prenorm): refused, "
              "since our blocks are post-norm and a state dict does not tell the two apart.")
@board_training_options()
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the validation split and of fine-tuning.")
@click.option("--out", type=OutputPath(folder=True, holds=CHECKPOINT_FILE), required=True,
              help=f"Folder for the checkpoint ({CHECKPOINT_FILE}); `compile` takes it.")
@click.option("--report", type=OutputPath(), default=None, help="Write a JSON report here.")
def import_command(state_dict, dataset, data_root, classes, bits, a_range, finetune_epochs,
                   prenorm, board_profile, hardware_aware, seed, out, report):
    """Import STATE_DICT, an S4D model trained with the reference implementation
    (state-spaces/s4: models/s4/s4d.py in example.py's S4Model, post-norm), and save it as an
    imssa-hw checkpoint quantized for the crossbar.

    STATE_DICT is what torch.save(model.state_dict()) wrote (read with weights_only: nothing
    is executed), example.py's checkpoint dict, or a .safetensors file. The float model maps
    exactly; a layer of another type, a bidirectional or non-diagonal kernel, or a shape that
    does not fit the layout is refused in one line naming it. Prints the float, post-training
    quantized and final accuracies on the data's test split.
    """
    from imssa_hw.board import load_board_profile
    from imssa_hw.data import DataSpec
    from imssa_hw.training.importer import import_reference

    if prenorm:
        raise BadInput("a pre-norm model (prenorm=True) does not map: our blocks normalize after "
                       "the residual, as example.py does by default")
    spec = DataSpec(task="custom", dataset=dataset,
                    data_root=str(data_root.expanduser().resolve()) if data_root else None,
                    classes=parse_ids(classes, "--classes"), seed=seed)
    board = load_board_profile(board_profile)
    bits = bits or 4
    bar = (click.progressbar(length=finetune_epochs, label="finetune", file=sys.stderr,
                             item_show_func=epoch_label) if finetune_epochs else nullcontext())
    with bar:
        result = import_reference(state_dict, spec, out / CHECKPOINT_FILE, bits=bits,
                                  a_range=a_range, board=board, finetune_epochs=finetune_epochs,
                                  hardware_aware_finetune=hardware_aware,
                                  epoch_progress=lambda record: bar.update(1, record))
    write_run_report(report, result, out / CHECKPOINT_FILE)
    info = result["import"]
    tuned = (f", fine-tuned {finetune_epochs} epochs "
             f"{100 * result['software_accuracy']:.2f} %" if finetune_epochs else "")
    loop = result["loop_accuracy"]
    click.echo(f"{state_dict} ({len(result['class_names'])} classes, {result['n_test']} test "
               f"samples): float {100 * info['float_accuracy']:.2f} %, {bits}-bit post-training "
               f"{100 * info['ptq_accuracy']:.2f} %{tuned}"
               + (f", {100 * loop:.2f} % through {board.name}'s simulated loop"
                  if loop is not None else "") + f"; wrote {out / CHECKPOINT_FILE}")
    if report:
        click.echo(f"report: {report}")
