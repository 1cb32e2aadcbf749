"""`imssa-hw finetune`: retrain the digital parts against the conductances a board holds."""

from __future__ import annotations

from pathlib import Path

import click

from imssa_hw.cli.board import port_option, timeout_option
from imssa_hw.cli.options import OutputPath, warn_uncalibrated
from imssa_hw.model.checkpoint import FINETUNED_FILE


@click.command()
@click.argument("deploy_dir", type=click.Path(path_type=Path))
@port_option
@timeout_option
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Folder from `imssa-hw calibrate`: corrects the read-back conductances.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=15, show_default=True)
@click.option("--out", type=OutputPath(folder=True, holds=FINETUNED_FILE), default=None,
              help=f"Folder for the fine-tuned checkpoint, {FINETUNED_FILE} (default: "
                   "DEPLOY_DIR).")
@click.option("--report", type=OutputPath(), default=None,
              help="Write the JSON report here: accuracy on the training split before and "
                   "after, per epoch, the epoch kept and its held-out speakers' accuracy.")
def finetune(deploy_dir, port, timeout_s, calibration, epochs, out, report):
    """Chip-in-the-loop fine-tuning: read back the programmed conductances, measure every
    layer's response on them, and retrain the digital parts (encoder, D, mix, norms, decoder)
    around it. The kernels stay as programmed; `imssa-hw infer --checkpoint OUT` uses it."""
    from imssa_hw.calibration.data import load_calibration
    from imssa_hw.drivers.open import open_board
    from imssa_hw.files import check_writable, write_json
    from imssa_hw.hil.finetune import finetune_on_board, kept_epoch
    from imssa_hw.hil.inference import open_deployment

    dep, ckpt = open_deployment(deploy_dir)
    cal = load_calibration(calibration) if calibration else None
    out = (out or Path(deploy_dir)) / FINETUNED_FILE
    check_writable(out)
    with open_board(port, timeout_s) as board:
        summary = finetune_on_board(board, dep, ckpt, out, cal, epochs)
    summary = warn_uncalibrated(summary) if cal is None else {**summary, "calibrated": True}
    if report:
        write_json(report, summary)
    click.echo(f"hardware model on the training split: {100 * summary['accuracy_before']:.2f} % "
               f"before, {100 * summary['accuracy_after']:.2f} % after fine-tuning "
               f"({kept_epoch(summary)}); wrote {out}")
