"""`imssa-hw sweep`: accuracy against programming noise for several bit widths."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from imssa_hw.cli.interrupt import on_interrupt
from imssa_hw.cli.options import MAX_WAIT_S, FiniteFloat, OutputPath, a_range_option, ranges_option
from imssa_hw.errors import BadInput
from imssa_hw.model.config import MAX_BITS, ModelConfig
from imssa_hw.workflows.sweep import NOISE_CELLS, OLD_METHOD_NAMES, SweepMethod


SWEEP_BITS = {"zero-one": "1,2,3,4,5,6,7,8", "digits": "2,3,4,5", "hd20": "2,3,4,5"}
"""The bit widths a task's sweep trains by default (the ten-class models need 2 bits or more)."""
MAX_SIGMA_US = 1000.0
"""Programming noise beyond this is many times any board's conductance window."""


def _numbers(text: str, name: str, cast=float) -> list:
    try:
        values = [cast(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise BadInput(f"{name} is empty")
    if not all(math.isfinite(v) for v in values):
        raise BadInput(f"{name} must be finite numbers, got {text!r}")
    return values


@click.command()
@click.option("--task", type=click.Choice(["zero-one", "digits", "hd20"]), default="zero-one",
              show_default=True)
@click.option("--bits", "bits_text", default=None,
              help="Bits per device, one model each (trained once, then cached); the paper's "
              "signed b-bit kernels are b-1 here. Default: the task's (zero-one 1..8; digits "
              "and hd20 2,3,4,5).")
@click.option("--sigma-us", "sigma_text", default="0,2.5,5,10,15,20", show_default=True,
              help="Programming noise sigmas in uS.")
@click.option("--draws", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Noise draws (noise) or emulated boards (write-verify) per model and point.")
@click.option("--seed", "model_seeds_text", default="0", show_default=True,
              help="Training seeds, a list (0,1,2): one model per bit width and seed, each "
              "trained on the task's default data (real speech where shipped) with its own augmentation and "
              "initialization. How much noise costs differs a lot between models of one bit "
              "width; average over several (e.g. 0,1,2).")
@click.option("--method", "methods",
              type=click.Choice([m.value for m in SweepMethod] + list(OLD_METHOD_NAMES)),
              multiple=True, default=(SweepMethod.NOISE.value,), show_default=True,
              help="noise: Gaussian noise on the targets (the paper); write_verify: program "
              "an emulated board whose SET noise is sigma. Repeat for both. (open_loop is the "
              "old name of noise, accepted for one version.)")
@click.option("--noise-cells", type=click.Choice(NOISE_CELLS), default="tiles",
              show_default=True, help="The noise on every cell of each kernel's own tile "
              "(the paper: one kernel per crossbar), or on every cell that matters (also the off "
              "cells between kernels packed on one array: noise becomes cross-talk).")
@click.option("--epochs", type=click.IntRange(1, 10000), default=40, show_default=True)
@a_range_option(default=None)
@ranges_option
@click.option("--h", "h", type=click.IntRange(1, 4096), default=None,
              help="Channels H (default: the task's: zero-one 16, digits and hd20 64).")
@click.option("--n", "n", type=click.IntRange(2, 256), default=None,
              help="Real state size N per kernel (default: the task's: zero-one 4, digits and "
              "hd20 8).")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="Only the first N test samples per point.")
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Local worker processes.")
@click.option("--scheduler", default=None,
              help="Dask distributed scheduler address (e.g. tcp://127.0.0.1:8786): run the "
              "points on that cluster instead of local processes.")
@click.option("--scheduler-timeout", "scheduler_timeout_s", type=FiniteFloat(0.1, MAX_WAIT_S),
              default=10.0, show_default=True,
              help="Seconds to wait for the Dask scheduler to answer.")
@click.option("--out", type=OutputPath(folder=True), default=Path("sweep"), show_default=True,
              help="Folder for sweep.json, sweep.png and the write-verify boards.")
def sweep(task, bits_text, sigma_text, draws, model_seeds_text, methods, noise_cells, epochs,
          a_range, ranges, h, n, limit, workers, scheduler, scheduler_timeout_s, out):
    """Accuracy against programming noise sigma for several bit widths, Gaussian noise on the
    targets and/or with
    write-verify on the emulator; prints a table and writes sweep.json and sweep.png.

    Bits are per device: b bits give each kernel weight the levels -(2^b-1)..(2^b-1) on a
    G+/G- pair. The paper counts signed bits (its 2-bit kernels are ternary), so its b bits
    are b-1 here. Models are trained once per setting and cached (IMSSA_HW_CACHE).

    The paper's setting is --a-range 1 (Abar's grid spans the unit disc): there ternary
    kernels (--bits 1) can only be memoryless and hold at any sigma, while the paper's 5-bit
    ones (--bits 4) put poles near the unit circle and degrade by 5 uS. The default 0.75
    keeps every width's poles well inside (docs/inference.md).
    """
    from imssa_hw.data import DataSpec
    from imssa_hw.files import write_json
    from imssa_hw.model.config import task_model
    from imssa_hw.workflows.demo import TASK_DEMOS
    from imssa_hw.workflows.model_cache import ModelRecipe, trained_model
    from imssa_hw.workflows.sweep import SweepPoint, dask_client, plot, run_points, table

    bits_list = _numbers(bits_text or SWEEP_BITS[task], "--bits", int)
    if not all(1 <= b <= MAX_BITS for b in bits_list):
        raise BadInput(f"--bits must be within 1..{MAX_BITS}, got {bits_text!r}")
    sigmas_siemens = [s * 1e-6 for s in _numbers(sigma_text, "--sigma-us")]
    if any(s < 0 for s in sigmas_siemens):
        raise BadInput("--sigma-us must not be negative")
    if max(sigmas_siemens) > MAX_SIGMA_US * 1e-6:
        raise BadInput(f"--sigma-us must be at most {MAX_SIGMA_US:g} uS, got {sigma_text!r}")
    model_seeds = _numbers(model_seeds_text, "--seed", int)
    if len(set(model_seeds)) != len(model_seeds) or min(model_seeds) < 0:
        raise BadInput("--seed must be distinct non-negative integers, "
                       f"got {model_seeds_text!r}")
    for old in sorted(set(methods) & set(OLD_METHOD_NAMES)):
        click.echo(f"--method {old} is now --method {OLD_METHOD_NAMES[old]} (the old name goes "
                   f"in the next version)", err=True)
    methods = tuple(dict.fromkeys(SweepMethod(OLD_METHOD_NAMES.get(m, m)) for m in methods))
    client = dask_client(scheduler, scheduler_timeout_s) if scheduler else None
    on_interrupt(f"the models trained so far stay in the model cache, nothing else is kept "
                 f"({out / 'sweep.json'} is written at the end); the same command again trains "
                 f"only what is missing")
    checkpoints = {}
    model_shape = task_model(task, h=h, n=n, a_range=a_range, ranges=ranges)
    h, n = model_shape["h"], model_shape["n"]
    a_range = model_shape.setdefault("a_range", ModelConfig.a_range)
    board_profile = TASK_DEMOS[task].board_profile
    for model_seed in model_seeds:
        data_spec = DataSpec.default(task, seed=model_seed)
        for bits in bits_list:
            model = {**model_shape, "bits": bits}
            trained = trained_model(ModelRecipe(data_spec, model, epochs))
            checkpoints[bits, model_seed] = str(trained.path)
            click.echo(f"{bits}-bit model, seed {model_seed}: software "
                       f"{100 * trained.summary['software_accuracy']:.2f} % ({trained.source})")
    points = [SweepPoint(checkpoints[b, ms], b, s, seed, m, limit,
                         str(out / "boards" / f"{m}-{b}bit-{ms}-{s * 1e6:g}uS-{seed}"),
                         noise_cells, ms, board_profile)
              for m in methods for b in bits_list for ms in model_seeds for s in sigmas_siemens
              for seed in range(draws)]
    try:
        with click.progressbar(length=len(points), label="sweep",
                               file=sys.stderr) as bar:
            results = run_points(points, workers, client, progress=lambda r: bar.update(1))
    finally:
        if client is not None:
            client.close()
    rows = table(results)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"task": task, "board_profile": board_profile,
                                    "noise_cells": noise_cells, "a_range": a_range,
                                    "ranges": ranges, "epochs": epochs, "h": h, "n": n,
                                    "n_layers": model_shape["n_layers"],
                                    "model_seeds": model_seeds, "rows": rows, "points": results})
    png = plot(rows, out / "sweep.png", f"{task}, {ranges.replace('_', '-')} ranges, "
               f"a_range {a_range:g}\nopen-loop noise on {noise_cells} cells, "
               f"{len(model_seeds)} model(s) x {draws} draws")
    click.echo(f"{'method':<13}{'bits':>5}{'paper':>6}{'sigma uS':>10}{'accuracy %':>12}"
               f"{'std':>7}{'lost':>7}")
    for r in rows:
        click.echo(f"{r['method']:<13}{r['bits']:>5}{r['paper_bits']:>6}{r['sigma_us']:>10g}"
                   f"{100 * r['accuracy_mean']:>12.2f}{100 * r['accuracy_std']:>7.2f}"
                   f"{r['points_lost']:>7.2f}")
    click.echo(f"wrote {out / 'sweep.json'}, {png}")
