"""Defect repair against no repair, on the very boards the fidelity bench emulates.

For each board (the emulator's device population for that seed and profile, at the task's board
geometry), the stuck devices as the emulator holds them become the defect map (what a perfect
calibration would find), the task's shipped model is compiled with and without repair
(`compile --repair/--no-repair`), and the test set runs in software on the targets with every
stuck device at its conductance, through the board's row DACs and column ADCs at the
deployment's TIA ranges (`board.read_chain.ReadChainModel`). `ideal` runs the unrepaired targets
without stuck devices: what a defect-free board would give. No programming error, drift or
noise: the stuck devices alone, so the difference is the repair's. Prints JSON {"runs": [{"seed",
"profile", "stuck", "unavoidable", "repaired_kernels", "actions", "accuracy": {"ideal",
"unrepaired", "repaired"}, "agreement": {...}}], "summary": ...}; accuracies in 0..1.

    python bench/repair.py [--task zero-one|digits] [--seeds 1,2,3] [--profiles default,harsh]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np

PROFILES = {"default": "emulator-default", "harsh": "emulator-harsh"}


def board_defects(profile: str, seed: int, geometry):
    """(DefectMap, conductances (arrays, rows, cols) S) of the emulated board's stuck devices."""
    from imssa_hw.compiler.defects import DefectMap, StuckDevice
    from imssa_hw.emulator.devices import HEALTHY, STUCK_ON
    from imssa_hw.emulator.profile import load_emulator_profile
    from imssa_hw.emulator.server import build_board

    emulated = load_emulator_profile(PROFILES[profile], {"board.arrays": geometry.arrays,
                                                "board.rows": geometry.rows,
                                                "board.cols": geometry.cols})
    board, _ = build_board(emulated, seed, None)
    devices = board.state.devices
    g = devices.g_final_siemens
    stuck = tuple(StuckDevice(int(a), int(r), int(c),
                              "stuck_on" if devices.defect[a, r, c] == STUCK_ON else "stuck_off",
                              float(g[a, r, c]))
                  for a, r, c in zip(*np.nonzero(devices.defect != HEALTHY)))
    return DefectMap(*geometry.shape, stuck), g


def run(task: str, profile: str, seed: int, ckpt, features, labels, software) -> dict:
    from imssa_hw.board import load_board_profile
    from imssa_hw.board.read_chain import ReadChainModel
    from imssa_hw.compiler import compile_checkpoint
    from imssa_hw.hil.budget import simulated_scores
    from imssa_hw.workflows.demo import TASK_DEMOS

    board = load_board_profile(TASK_DEMOS[task].board_profile)
    defects, g = board_defects(profile, seed, board.geometry)
    chain = ReadChainModel.from_spec(board.read)
    scores, summary = {}, {}
    for name, repaired in (("unrepaired", False), ("repaired", True)):
        dep = compile_checkpoint(ckpt, board, defects, repair_defects=repaired)
        if not repaired:
            scores["ideal"] = simulated_scores(dep, ckpt, features, software, labels,
                                               dep.targets_siemens, chain, [seed])[0]
        maps = np.where(defects.mask(), g, dep.targets_siemens)
        scores[name] = simulated_scores(dep, ckpt, features, software, labels, maps, chain,
                                        [seed])[0]
        summary = dep.summary
    return {"task": task, "seed": seed, "profile": profile, "stuck": len(defects.stuck),
            "unavoidable": len(summary["unavoidable_defects"]),
            "repaired_kernels": len(summary["repaired_kernels"]),
            "actions": dict(Counter(r["action"].split(" ")[0]
                                    for r in summary["repaired_kernels"])),
            "accuracy": {k: round(v["accuracy"], 4) for k, v in scores.items()},
            "agreement": {k: round(v["agreement"], 4) for k, v in scores.items()}}


def main() -> None:
    from imssa_hw.board import load_board_profile
    from imssa_hw.hil.inference import load_test_set
    from imssa_hw.model import reference
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.workflows.demo import DemoSettings
    from imssa_hw.workflows.model_cache import trained_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits", choices=["zero-one", "digits"])
    parser.add_argument("--seeds", default="1,2,3,4,5,6,7,8,9,10")
    parser.add_argument("--profiles", default="default,harsh")
    args = parser.parse_args()
    start = time.perf_counter()
    settings = DemoSettings(task=args.task)  # the demo's model: the shipped one
    recipe = settings.recipe(load_board_profile(settings.board_profile))
    ckpt = load_checkpoint(trained_model(recipe).path)
    features, labels = load_test_set(ckpt)[:2]
    software = reference.forward(ckpt, features)
    runs = [run(args.task, profile, int(seed), ckpt, features, labels, software)
            for profile in args.profiles.split(",") for seed in args.seeds.split(",")]
    summary = []
    for profile in args.profiles.split(","):
        group = [r for r in runs if r["profile"] == profile]
        loss = {k: [round(100 * (r["accuracy"]["ideal"] - r["accuracy"][k]), 2) for r in group]
                for k in ("unrepaired", "repaired")}
        summary.append({"profile": profile, "boards": len(group),
                        "points_lost_to_stuck_devices": loss,
                        "worst_unrepaired": max(loss["unrepaired"]),
                        "worst_repaired": max(loss["repaired"]),
                        "min_agreement": {k: min(r["agreement"][k] for r in group)
                                          for k in ("ideal", "unrepaired", "repaired")}})
    print(json.dumps({"runs": runs, "summary": summary, "n_test": int(len(labels)),
                      "wall_time_s": round(time.perf_counter() - start, 1)}, indent=2))


if __name__ == "__main__":
    main()
