"""`imssa-hw train`: S4D + fixed-dynamic-range QAT on a spoken-digit task."""

from __future__ import annotations

import platform
from pathlib import Path

import click

from imssa_hw.cli.options import bits_option, parse_classes
from imssa_hw.errors import BadInput
from imssa_hw.files import write_json

# Epochs that reach the accuracy targets within the time budget (see bench/train.py).
DEFAULT_EPOCHS = {"zero-one": 40, "digits": 40, "hd20": 40}


@click.command()
@click.option("--task", type=click.Choice(["zero-one", "digits", "hd20"]), default="zero-one",
              show_default=True, help="zero-one: 'zero' vs 'one' (the paper's task); digits: "
              "English 0-9; hd20: English and German 0-9.")
@click.option("--dataset", type=click.Choice(["synthetic", "hd"]), default="synthetic",
              show_default=True, help="synthetic: offline eSpeak NG speech (no download); "
              "hd: Heidelberg Digits files under --data-root.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Heidelberg Digits folder (audio/, train_filenames.txt, test_filenames.txt).")
@click.option("--classes", default=None, help="Subset of label ids, e.g. 0,1 (German digits are 10-19).")
@bits_option
@click.option("--epochs", type=click.IntRange(1, 10000), default=None,
              help="Training epochs (default: the task's).")
@click.option("--h", "h", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Channels H (one S4D kernel each).")
@click.option("--n", "n", type=click.IntRange(2, 256), default=4, show_default=True,
              help="Real state size N per kernel (N/2 complex modes; even).")
@click.option("--layers", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--noise-levels", type=click.FloatRange(0, 10), default=0.0, show_default=True,
              help="Noise-aware training: Gaussian noise on the levels, sigma in level units.")
@click.option("--n-train-per-class", type=click.IntRange(1, 100000), default=None,
              help="Override the task's training-set size (small runs).")
@click.option("--n-test-per-class", type=click.IntRange(1, 100000), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Checkpoint to write (safetensors format).")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write a JSON report here.")
def train(task, dataset, data_root, classes, bits, epochs, h, n, layers, noise_levels,
          n_train_per_class, n_test_per_class, seed, out, report):
    """Train an S4D classifier with quantization-aware training and save a safe checkpoint.

    Prints the quantized model's test accuracy (software_accuracy) and the float model's.
    """
    from imssa_hw.classifier import save_model
    from imssa_hw.config import ModelConfig
    from imssa_hw.data import load_task
    from imssa_hw.training import TrainConfig, train as run_training

    if n % 2:
        raise BadInput(f"--n must be even (N/2 complex modes), got {n}")
    with click.progressbar(length=1, label="data", file=click.get_text_stream("stderr")) as bar:
        def data_progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)
        data = load_task(task, dataset=dataset, data_root=data_root,
                         classes=parse_classes(classes), seed=seed,
                         n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class,
                         progress=data_progress)
    model_cfg = ModelConfig(d_input=data.x_train.shape[-1], n_classes=len(data.classes), h=h, n=n,
                            n_layers=layers, bits=bits, noise_levels=noise_levels)
    cfg = TrainConfig(epochs=epochs or DEFAULT_EPOCHS[task], seed=seed)
    with click.progressbar(length=cfg.epochs, label="train", file=click.get_text_stream("stderr"),
                           item_show_func=lambda r: r and
                           f"{r['phase']} loss {r['loss']:.3f} val {r['val_accuracy']:.3f}") as bar:
        result = run_training(data.x_train, data.y_train, data.x_test, data.y_test, model_cfg,
                              cfg, progress=lambda record: bar.update(1, record))
    summary = {
        "task": task, "dataset": dataset, "classes": data.classes, "class_names": data.class_names,
        "bits": bits, "software_accuracy": result.software_accuracy,
        "float_accuracy": result.float_accuracy, "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)), "epochs": cfg.epochs,
        "wall_time_s": round(result.wall_time_s, 2),
    }
    meta = {**summary, "seed": seed, "features": data.features.to_dict(),
            "normalization": data.normalization, "data": data.info}
    digest = save_model(out, result.model, meta, range_features=data.x_train)
    if report:
        write_json(report, {**summary, "checkpoint": str(out), "digest": digest,
                                   "machine": platform.machine(), "history": result.history})
    float_text = ("-" if result.float_accuracy is None else f"{100 * result.float_accuracy:.2f} %")
    click.echo(f"{task}: {bits or 'float'}-bit software accuracy "
               f"{100 * result.software_accuracy:.2f} % (float {float_text}) on "
               f"{summary['n_test']} test samples; {summary['wall_time_s']:.0f} s; wrote {out}")
    if report:
        click.echo(f"report: {report}")
