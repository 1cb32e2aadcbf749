"""`imssa-hw train`: S4D + fixed-dynamic-range QAT on a spoken-digit task or a lab's own
sequences."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from imssa_hw.cli.options import (SEED, FiniteFloat, OutputPath, a_range_option, bits_option,
                                  board_training_options, parse_ids, ranges_option,
                                  epoch_label, write_run_report)
from imssa_hw.data.tasks import CUSTOM, CUSTOM_DATASETS, DATASETS, REAL_DEFAULTS, TASKS
from imssa_hw.errors import BadInput
from imssa_hw.model.checkpoint import CHECKPOINT_FILE
from imssa_hw.model.config import TASK_EPOCHS, task_model

@click.command()
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="zero-one: 'zero' vs 'one' (the paper's task); digits: English 0-9; hd20: "
              f"English and German 0-9; {CUSTOM}: the classes of the data "
              f"(--dataset {', '.join(CUSTOM_DATASETS)}). Default: zero-one, or {CUSTOM} for "
              "those datasets.")
@click.option("--dataset", type=click.Choice(DATASETS), default=None,
              help="fsdd: real recordings of six speakers shipped with imssa-hw (English "
              "digits; the test split is a speaker the model never hears); hd: any folder in the "
              "Heidelberg Digits layout (--data-root), HD itself included; synthetic: offline "
              "eSpeak NG speech; arrays: sequences in an .npz (--data-root; x_train, y_train, "
              "x_test, y_test, optional class_names; the model's input width is the data's); "
              "uci-digits: the 8x8 UCI handwritten digits shipped with imssa-hw, 8 rows of 8 "
              "pixels; folder: audio in a folder per label (--data-root; the Speech Commands "
              "layout, any file names, 8-48 kHz; testing_list.txt names the test split, else a "
              "seeded fifth of each class). Default: fsdd, synthetic for hd20, uci-digits for "
              "custom.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="hd: the Heidelberg Digits folder (audio/, train_filenames.txt, "
              "test_filenames.txt); arrays: the .npz file; folder: the folder of label folders.")
@click.option("--classes", default=None, help="Subset of label ids, e.g. 0,1 (German digits "
              "are 10-19; of a custom task, class indices of its data).")
@click.option("--test-speakers", default=None,
              help="Real data: these speakers (e.g. 3 or 3,7) are the test split and all others "
              "train, instead of the list files' split. For leave-one-speaker-out runs.")
@click.option("--mix-synthetic/--no-mix-synthetic", default=None,
              help=f"Real data: add {REAL_DEFAULTS['mix_synthetic']} synthetic clips per class "
              "(every eSpeak NG voice, with noise and rooms) to the training split. Default: on "
              "for real data.")
@click.option("--mix-flite/--no-mix-flite", default=None,
              help="Real data: add the shipped clips of four CMU Flite voices (English digits at "
              "five speaking rates; imssa_hw/data/flite) to the training split as extra "
              "speakers, perturbed like the real clips. Default: on for real data.")
@click.option("--augment-copies", type=click.IntRange(0, 100), default=None,
              help="Perturbed copies of every training clip (speed, frequency and tempo warp, "
              "channel, room, noise, gain, shift; docs/data.md). Default: "
              f"{REAL_DEFAULTS['augment'].copies} for real data, 0 for synthetic.")
@bits_option()
@click.option("--epochs", type=click.IntRange(1, 10000), default=None,
              help="Training epochs (default: the task's, see below).")
@click.option("--h", "h", type=click.IntRange(1, 4096), default=None,
              help="Channels H, one S4D kernel each (default: the task's).")
@click.option("--n", "n", type=click.IntRange(2, 256), default=None,
              help="Real state size N per kernel: N/2 complex modes, even (default: the task's).")
@click.option("--layers", type=click.IntRange(1, 16), default=None,
              help="S4D layers (default: the task's).")
@click.option("--noise-levels", type=FiniteFloat(0, 10), default=0.0, show_default=True,
              help="Noise-aware training: Gaussian noise on the levels, sigma in level units.")
@a_range_option(None)
@ranges_option
@click.option("--n-train-per-class", type=click.IntRange(1, 100000), default=None,
              help="Override the task's training-set size (small runs).")
@click.option("--n-test-per-class", type=click.IntRange(1, 100000), default=None)
@board_training_options()
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", type=OutputPath(folder=True, holds=CHECKPOINT_FILE), required=True,
              help=f"Folder for the checkpoint ({CHECKPOINT_FILE}, safetensors format); "
                   "`compile` and `--checkpoint` take the folder or the file.")
@click.option("--report", type=OutputPath(), default=None,
              help="Write a JSON report here.")
def train(task, dataset, data_root, classes, test_speakers, mix_synthetic, mix_flite,
          augment_copies, bits, epochs, h, n, layers, noise_levels, a_range, ranges,
          n_train_per_class, n_test_per_class, board_profile, hardware_aware, seed, out, report):
    """Train an S4D classifier with quantization-aware training and save a safe checkpoint.

    By default zero-one and digits train on real recordings shipped with imssa-hw (six FSDD
    speakers; the test split is speaker 03, whom the model never hears), each training clip
    with perturbed copies, four flite voices as extra speakers and synthetic eSpeak speech
    mixed in; the epoch kept is the best on a validation part of the training speakers (whole
    held-out speakers when there are four or more). Prints the quantized model's test accuracy
    (software_accuracy) and the float model's. Task defaults (H, N, layers, a-range): zero-one
    16, 4, 1, 0.75 (the paper's one-layer model); digits and hd20 64, 8, 2, 0.95 (with dt
    0.01-0.5); 40 epochs.
    """
    from imssa_hw.board import load_board_profile
    from imssa_hw.data import AugmentSpec, DataSpec
    from imssa_hw.training.trainer import train_task

    task = task or (CUSTOM if dataset in CUSTOM_DATASETS else "zero-one")
    model = task_model(task, bits=bits, h=h, n=n, n_layers=layers, noise_levels=noise_levels,
                       a_range=a_range, ranges=ranges)
    model["bits"] = bits  # None (float) is a choice here, not "the default"
    epochs = epochs or TASK_EPOCHS
    if model["n"] % 2:
        raise BadInput(f"--n must be even (N/2 complex modes), got {model['n']}")
    changes = {"data_root": str(data_root.expanduser().resolve()) if data_root else None,
               "classes": parse_ids(classes, "--classes"), "seed": seed,
               "n_train_per_class": n_train_per_class, "n_test_per_class": n_test_per_class,
               "test_speakers": parse_ids(test_speakers, "--test-speakers")}
    if mix_synthetic is not None:
        changes["mix_synthetic"] = REAL_DEFAULTS["mix_synthetic"] if mix_synthetic else 0
    if mix_flite is not None:
        changes["mix_flite"] = mix_flite
    if augment_copies is not None:
        changes["augment"] = AugmentSpec(copies=augment_copies)
    data_spec = DataSpec.default(task, dataset, **changes)
    board = load_board_profile(board_profile)
    err = sys.stderr
    with click.progressbar(length=1, label="data ", file=err) as data_bar, \
            click.progressbar(length=epochs, label="train", file=err,
                              item_show_func=epoch_label) as train_bar:
        def data_progress(done: int, total: int) -> None:
            data_bar.length = total
            data_bar.update(done - data_bar.pos)
        result = train_task(data_spec, out / CHECKPOINT_FILE, model=model, epochs=epochs, board=board,
                            hardware_aware=hardware_aware and bits is not None,
                            data_progress=data_progress,
                            epoch_progress=lambda record: train_bar.update(1, record))
    write_run_report(report, result, out / CHECKPOINT_FILE)
    fa = result["float_accuracy"]
    speakers = result["speakers_test"]
    who = (f" of speaker{'s' if len(speakers) > 1 else ''} "
           f"{', '.join(f'{s:02d}' for s in speakers)}" if speakers else "")
    click.echo(f"{task} ({data_spec.dataset}): {bits or 'float'}-bit software accuracy "
               f"{100 * result['software_accuracy']:.2f} % (float "
               f"{'-' if fa is None else f'{100 * fa:.2f} %'}) on {result['n_test']} test "
               f"samples{who}" + (f", {100 * result['loop_accuracy']:.2f} % through "
                                  f"{board.name}'s simulated loop" if result["loop_accuracy"]
                                  is not None else "")
               + f"; {result['wall_time_s']:.0f} s; wrote {out / CHECKPOINT_FILE}")
    if result["worst_confusions"]:
        click.echo("most confused: " + ", ".join(
            f"{c['true']} as {c['predicted']} ({c['count']} of {c['of']})"
            for c in result["worst_confusions"]))
    if report:
        click.echo(f"report: {report}")
