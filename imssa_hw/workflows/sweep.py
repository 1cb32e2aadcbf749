"""Accuracy against programming noise for several bit widths (the paper's Fig. 4, and beyond).

Each point (bits, model seed, sigma, seed, method) compiles the model of that bit width
trained on that seed's data, perturbs or programs its conductances, and classifies the test
set on the resulting maps with the compiler's executor:
- noise: Gaussian noise of `sigma` on every cell of each kernel's tile (its A, B, C
  conductances, zeros included: the paper's simulation, one kernel per crossbar), or on every
  cell that matters (`noise_cells="used"`: also the off cells between kernels packed on one
  array, through which noise becomes cross-talk between kernels);
- write_verify: an emulated board whose SET noise is `sigma` is programmed with the adaptive
  write-verify loop, and the conductances it really holds are used.
Points run in parallel on local processes, or on a Dask distributed cluster.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from imssa_hw.errors import BadInput



class SweepMethod(StrEnum):
    """How the sweep makes a programmed board."""

    NOISE = "noise"
    """Gaussian noise of sigma on the targets (the paper's experiment)."""
    WRITE_VERIFY = "write_verify"
    """Write-verify onto an emulated board whose SET noise is sigma."""


OLD_METHOD_NAMES = {"open_loop": "noise"}
"""Accepted for one version: `open_loop` also named a programming strategy (`program
--strategy open_loop`), so the sweep's Gaussian-noise method is now `noise`."""


@dataclass(frozen=True)
class SweepPoint:
    """One measurement of the sweep."""

    checkpoint: str
    bits: int
    sigma_siemens: float
    seed: int  # the noise draw (noise) or the emulated board (write-verify)
    method: SweepMethod
    limit: int | None = None
    workdir: str | None = None  # write_verify: where its emulator keeps its files
    noise_cells: str = "tiles"  # noise: "tiles" (each kernel's own cells) or "used"
    model_seed: int = 0  # the data and training seed of the checkpoint
    board_profile: str = "board-default"  # the board the model is compiled for


NOISE_CELLS = ("tiles", "used")


def noisy_maps(targets: np.ndarray, cells: np.ndarray, sigma_siemens: float,
               rng: np.random.Generator) -> np.ndarray:
    """Targets with Gaussian noise of `sigma_siemens` on `cells`, clipped at 0 S."""
    noise = rng.normal(0.0, sigma_siemens, targets.shape) * cells
    return np.maximum(targets + noise, 0.0)


def tile_cells(dep) -> np.ndarray:
    """(arrays, rows, cols) bool: the cells inside each kernel's own tile (rows and columns of
    one kernel), without the off cells between kernels that share an array."""
    cells = np.zeros(dep.used.shape, bool)
    for tile in dep.placement.tiles:
        cells[tile.array][np.ix_(tile.rows, tile.cols)] = True
    return cells


def _programmed_maps(point: SweepPoint, dep) -> np.ndarray:
    """Program an emulated board with SET noise sigma and return what it holds (S)."""
    from imssa_hw.drivers.board import Board
    from imssa_hw.emulator.process import start_emulator
    from imssa_hw.programming import program_deployment

    geo = dep.profile.geometry
    # SET noise sigma; the read chain as after calibration (no column errors) and no stuck
    # devices (the compile here has no defect map), so that the points measure programming
    # noise alone; calibration and defect-aware placement are measured by the demo
    c2c = {"device.set_c2c_sigma_siemens": point.sigma_siemens, "device.set_c2c_slope": 0.0,
           "device.set_c2c_min_siemens": 0.0, "read_chain.tia_gain_sigma": 0.0,
           "read_chain.tia_offset_sigma_fs": 0.0, "defects.stuck_on_fraction": 0.0,
           "defects.stuck_off_fraction": 0.0}
    emu = start_emulator(Path(point.workdir), seed=point.seed, arrays=geo.arrays, rows=geo.rows,
                         cols=geo.cols, settings=c2c)
    try:
        with Board.open(emu.port) as board:
            program_deployment(board, dep)
        return emu.truth_siemens()
    finally:
        emu.stop()


def evaluate_point(point: SweepPoint) -> dict:
    """Accuracy of one point; runs in a worker process (numpy only, no torch)."""
    from imssa_hw.model import reference
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.board import load_board_profile
    from imssa_hw.compiler import Executor, compile_checkpoint
    from imssa_hw.hil.inference import load_test_set

    ckpt = load_checkpoint(point.checkpoint)
    dep = compile_checkpoint(ckpt, load_board_profile(point.board_profile), seed=point.seed)
    features, labels, _ = load_test_set(ckpt, limit=point.limit)
    if point.method == SweepMethod.NOISE:
        cells = dep.used if point.noise_cells == "used" else tile_cells(dep)
        maps = noisy_maps(dep.targets_siemens, cells, point.sigma_siemens,
                          np.random.default_rng(point.seed))
    else:
        cells = dep.used
        maps = _programmed_maps(point, dep)
    logits = reference.forward(ckpt, features, recurrence=Executor.on_maps(dep.schedule, maps))
    software = reference.forward(ckpt, features)
    error_siemens = np.abs(maps - dep.targets_siemens)[cells]
    return {**asdict(point), "accuracy": float((logits.argmax(-1) == labels).mean()),
            "software_accuracy": float((software.argmax(-1) == labels).mean()),
            "median_abs_error_siemens": float(np.median(error_siemens)), "n_samples": int(len(labels))}


def dask_client(scheduler: str, timeout_s: float = 10.0):
    """A client of the Dask distributed scheduler at `scheduler` (BadInput if none answers
    within `timeout_s`)."""
    from imssa_hw.extras import require

    try:
        return require("distributed").Client(scheduler, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInput(f"no Dask scheduler at {scheduler}: {exc}") from None


def run_points(points: list[SweepPoint], workers: int = 2, client=None,
               progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Evaluate every point in parallel: on local processes, or on the Dask cluster of
    `client` (from dask_client)."""
    progress = progress or (lambda result: None)
    results = []
    if client is not None:
        from distributed import as_completed

        for future in as_completed(client.map(evaluate_point, points, pure=False)):
            results.append(future.result())
            progress(results[-1])
    else:
        # without fork (Windows) the workers are spawned, as there by default
        context = None if hasattr(os, "fork") else multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for result in pool.map(evaluate_point, points):
                results.append(result)
                progress(result)
    return sorted(results, key=lambda r: (r["method"], r["bits"], r["sigma_siemens"], r["model_seed"],
                                          r["seed"]))


def paper_bits(bits: int) -> int:
    """The paper's name for `bits` bits per device: it counts signed bits, so its 2-bit
    kernels are ternary (1 bit per device here) and its 5-bit ones have levels -15..15."""
    return bits + 1


def table(results: Iterable[dict]) -> list[dict]:
    """One row per (method, bits, sigma) over its models and seeds: mean and spread of the
    accuracy, the same models' noiseless accuracy, and the points lost against it."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["method"], r["bits"], r["sigma_siemens"]), []).append(r)
    rows = []
    for (method, bits, sigma_siemens), points in sorted(groups.items()):
        accuracy = [p["accuracy"] for p in points]
        software = float(np.mean([p["software_accuracy"] for p in points]))
        rows.append({"method": method, "bits": bits, "paper_bits": paper_bits(bits),
                     "sigma_us": round(sigma_siemens * 1e6, 3), "accuracy_mean": float(np.mean(accuracy)),
                     "accuracy_std": float(np.std(accuracy)), "software_accuracy": software,
                     "points_lost": round(100 * (software - float(np.mean(accuracy))), 2),
                     "models": len({p["model_seed"] for p in points}),
                     "seeds": len({p["seed"] for p in points})})
    return rows


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy vs sigma, one line per bit width, one panel per method."""
    from matplotlib.figure import Figure

    methods = sorted({r["method"] for r in rows})
    fig = Figure(figsize=(5 * len(methods), 3.6))
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        for bits in sorted({r["bits"] for r in rows}):
            line = [r for r in rows if r["method"] == method and r["bits"] == bits]
            ax.errorbar([r["sigma_us"] for r in line], [100 * r["accuracy_mean"] for r in line],
                        yerr=[100 * r["accuracy_std"] for r in line], marker="o", capsize=2,
                        label=f"{bits} bit/device (paper: {paper_bits(bits)}-bit)")
        ax.set_title(method.replace("_", " "))
        ax.set_xlabel("programming noise sigma (uS)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
