"""Bring your own model and data (issue 33): a model of the S4D reference layout imported and run
on emulated boards, and the shipped second workload (UCI digits, not speech) end to end. Prints
JSON.

`--part import`: a model in the layout of state-spaces/s4 (`tests/support/reference_s4d.py`:
example.py's S4Model of models/s4/s4d.py layers, post-norm; H = 16, N = 4, two layers, dt
0.01-0.5) is trained in float on the raw UCI digits (8 rows of 8 pixels, 1347 training and 450
test images; seed 0), saved as a torch state dict and imported with `imssa-hw import`'s code
at 4 bits per device for board-default: float, post-training quantized, and fine-tuned
(`--finetune-epochs`) accuracies on the test images, for each of `--ref-seeds`. The post-training quantized model, as
imported, then goes through calibrate, compile, program and infer (on-board loop) on emulated
3 x 64x64 boards of each seed (the demo's stages, with an SMU). Targets: PTQ loses <= 2 points
against float, <= 1 with fine-tuning; the board within 1 point of software on every seed.

`--part workload`: `imssa-hw demo --task custom` on each seed: the default custom model (H = 64,
N = 8, two layers, 4 bits, hardware-aware for board-multi, trained once and cached) on an
emulated 8 x 64x64 board. Target: the board within 1 point of software on every seed.

    python bench/bring_your_own.py [--part import|workload|both] [--seeds 1,2,3,4,5]
                                   [--ref-seeds 0] [--ref-epochs 20] [--finetune-epochs 5]
                                   [--out DIR]   (--seeds '': no boards)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402
from support.reference_s4d import ReferenceModel, train_reference  # noqa: E402  (tests/)

from imssa_hw.board import load_board_profile  # noqa: E402
from imssa_hw.data import DataSpec  # noqa: E402
from imssa_hw.data.arrays import UCI_DIGITS, read_sequences  # noqa: E402
from imssa_hw.drivers.board import Board  # noqa: E402
from imssa_hw.drivers.smu import open_smu  # noqa: E402
from imssa_hw.emulator.process import start_emulator  # noqa: E402
from imssa_hw.model.checkpoint import load_checkpoint  # noqa: E402
from imssa_hw.training.importer import import_reference  # noqa: E402
from imssa_hw.workflows.demo import DemoSettings, run_demo, run_on_board  # noqa: E402

IMPORT_PROFILE = "board-default"
REFERENCE_SHAPE = {"h": 16, "n": 4, "n_layers": 2, "dt_min": 0.01, "dt_max": 0.5}


def echo(text: str) -> None:
    print(text, file=sys.stderr)


def board_row(seed: int, before: dict, started: float) -> dict:
    """One board's line: accuracies, agreement, the points lost and the wall time."""
    software = before["software_accuracy"]
    return {"seed": seed, "software": software, "hardware_as_trained": before["hardware_accuracy"],
            "agreement": before["agreement"],
            "loss_points": round(100 * (software - before["hardware_accuracy"]), 2),
            "board_s": round(time.perf_counter() - started, 1)}


def imported(out: Path, ref_seed: int, ref_epochs: int, finetune_epochs: int) -> dict:
    """Train a reference-layout model of `ref_seed` on the raw digits and import it at 4 bits
    for board-default, post-training quantized (out/ptq) and fine-tuned (out/tuned)."""
    seqs = read_sequences(UCI_DIGITS)
    torch.manual_seed(ref_seed)
    reference = ReferenceModel(seqs.x_train.shape[-1], len(seqs.class_names), **REFERENCE_SHAPE)
    started = time.perf_counter()
    train_reference(reference, seqs.x_train, seqs.y_train, ref_epochs, seed=ref_seed)
    train_s = time.perf_counter() - started
    state = out / "reference.pt"
    out.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), state)
    profile = load_board_profile(IMPORT_PROFILE)
    spec = DataSpec(task="custom", dataset="uci-digits")
    ptq = import_reference(state, spec, out / "ptq" / "model.pt", bits=4, board=profile)
    tuned = import_reference(state, spec, out / "tuned" / "model.pt", bits=4, board=profile,
                             finetune_epochs=finetune_epochs)
    info = ptq["import"]
    return {
        "ref_seed": ref_seed, "train_s": round(train_s, 1),
        "float": info["float_accuracy"], "ptq_4bit": info["ptq_accuracy"],
        "ptq_loss_points": round(100 * (info["float_accuracy"] - info["ptq_accuracy"]), 2),
        "ptq_loop": ptq["loop_accuracy"], "finetuned_4bit": tuned["software_accuracy"],
        "finetuned_loss_points": round(100 * (info["float_accuracy"]
                                              - tuned["software_accuracy"]), 2),
        "finetuned_loop": tuned["loop_accuracy"], "n_test": ptq["n_test"]}


def import_part(out: Path, seeds: list[int], ref_seeds: list[int], ref_epochs: int,
                finetune_epochs: int) -> dict:
    """Reference-layout models of `ref_seeds` imported with and without fine-tuning; the first
    one's post-training quantized model on a board of each of `seeds`."""
    models = [imported(out / f"ref-{s}", s, ref_epochs, finetune_epochs) for s in ref_seeds]
    first = out / f"ref-{ref_seeds[0]}" / "ptq" / "model.pt"
    profile = load_board_profile(IMPORT_PROFILE)
    ckpt = load_checkpoint(first)
    settings = DemoSettings(task="custom", board_profile=IMPORT_PROFILE)
    boards = []
    for seed in seeds:
        started = time.perf_counter()
        geo = profile.geometry
        emu = start_emulator(out / f"seed-{seed}" / "emulator", seed=seed, smu=True,
                             arrays=geo.arrays, rows=geo.rows, cols=geo.cols)
        try:
            with Board.open(emu.port) as board, open_smu(emu.smu_resource) as smu:
                run = run_on_board(board, smu, ckpt, first, profile, out / f"seed-{seed}",
                                   settings, {}, echo, finetune=False)
        finally:
            emu.stop()
        boards.append(board_row(seed, run.before, started))
    return {
        "reference": {**REFERENCE_SHAPE, "epochs": ref_epochs},
        "finetune_epochs": finetune_epochs, "models": models,
        "worst_ptq_loss_points": max(m["ptq_loss_points"] for m in models),
        "worst_finetuned_loss_points": max(m["finetuned_loss_points"] for m in models),
        "board_profile": IMPORT_PROFILE, "boards_model": f"ref_seed {ref_seeds[0]}, ptq",
        "boards": boards, "within_1_point": sum(b["loss_points"] <= 1 for b in boards),
        "worst_loss_points": max((b["loss_points"] for b in boards), default=None)}


def workload_part(out: Path, seeds: list[int]) -> dict:
    """`imssa-hw demo --task custom` on a board of each seed."""
    boards = []
    for seed in seeds:
        started = time.perf_counter()
        s = run_demo(out / f"demo-{seed}", DemoSettings(task="custom", board_seed=seed), echo)
        boards.append({**board_row(seed, {
            "software_accuracy": s["software_accuracy"],
            "hardware_accuracy": s["hardware_accuracy_before_finetune"],
            "agreement": s["agreement_before_finetune"]}, started),
            "model_source": s["model_source"], "board_profile": s["board_profile"],
            "n_test": s["n_test"], "yield_working": s["yield_working"]})
    return {"boards": boards, "within_1_point": sum(b["loss_points"] <= 1 for b in boards),
            "worst_loss_points": max((b["loss_points"] for b in boards), default=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("import", "workload", "both"), default="both")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--ref-seeds", default="0",
                        help="Seeds of the reference models (the first goes on the boards).")
    parser.add_argument("--ref-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="Keep every file here.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    started = time.perf_counter()
    result: dict = {"seeds": seeds}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        if args.part in ("import", "both"):
            result["import"] = import_part(out / "import", seeds,
                                           [int(s) for s in args.ref_seeds.split(",")],
                                           args.ref_epochs, args.finetune_epochs)
        if args.part in ("workload", "both"):
            result["workload"] = workload_part(out / "workload", seeds)
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    result["targets"] = ("import: PTQ at 4 bits loses <= 2 points against float, <= 1 with "
                         "fine-tuning; hardware as trained within 1 point of software on every "
                         "seed; workload: the same on every seed")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
