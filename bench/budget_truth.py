"""What the error budget cannot see: the budget's simulation of a board run on what the
emulator really holds, once with the calibration's column errors and once with the board's own.

For each board: `imssa-hw demo` (the default model, model seed 0, as fidelity.py runs it), then
the demo's deployment is simulated on the emulator's saved state (the devices' true
conductances at the time of saving, IR drop included) through the board's read-chain model
as the budget runs it (`board.read_chain.ReadChainModel`, `hil.budget.chain_vmm`: row DACs,
column ADCs at the deployment's TIA ranges, the columns' TIA gains and offsets, the read noise
averaged over the budget's draws) with

- the column gains and offsets the calibration measured (what `imssa-hw budget` uses), and
- the emulator's own (what no calibration hands over exactly),

and each is compared with the board's measured run (the demo's hardware accuracy as trained).
Read noise, programming and drift are the same in both, so the difference between the two
columns is what the calibration's residual column errors decide. Reading the emulator's
internals is what only an emulated board allows; the product never does it.

Prints JSON {"runs": [{"seed", "profile", "software", "hardware_as_trained",
"simulated_calibrated_columns", "simulated_true_columns", "offset_residual_rms_codes",
"gain_residual_rms", ...}], "summary": [...], "wall_time_s"}; accuracies in 0..1.

    python bench/budget_truth.py [--seeds 1,2,3,4,5] [--profiles default,harsh]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

PROFILES = {"default": "emulator-default", "harsh": "emulator-harsh"}


def simulate(out: Path, profile: str) -> dict:
    """The demo's deployment on the emulator's saved devices, with calibrated and true columns."""
    from imssa_hw.calibration.data import load_calibration
    from imssa_hw.compiler.artifact import load_deployment
    from imssa_hw.emulator.crossbar import Crossbar
    from imssa_hw.emulator.profile import load_emulator_profile
    from imssa_hw.emulator.state import load_state
    from imssa_hw.hil.budget import column_errors, simulated_scores
    from imssa_hw.hil.inference import load_test_set
    from imssa_hw.model import reference
    from imssa_hw.model.checkpoint import load_checkpoint

    emulator = load_emulator_profile(PROFILES[profile])
    state = load_state(out / "emulator" / "board.npz")
    dep, ckpt = load_deployment(out / "deploy"), load_checkpoint(out / "model.pt")
    cal = load_calibration(out / "calib")
    features, labels = load_test_set(ckpt)[:2]
    software = reference.forward(ckpt, features)
    crossbar = Crossbar(state.devices, state.chain, emulator.spec.read_chain, emulator.read_chain,
                        np.random.default_rng(0))
    arrays, _, cols = state.devices.g_final_siemens.shape
    truth = np.stack([crossbar.conductance(a, state.saved_wall_s)[0] for a in range(arrays)])
    gains, offsets = column_errors(cal, state.chain.adc_bits)
    used = dep.used.any(axis=1)  # (arrays, cols) the columns the deployment reads
    result = {}
    for name, chain in (("calibrated_columns", replace(crossbar.model, column_gain=gains,
                                                       column_offset_codes=offsets)),
                        ("true_columns", crossbar.model)):
        scores, _ = simulated_scores(dep, ckpt, features, software, labels, truth, chain, [0])
        result[f"simulated_{name}"] = scores["accuracy"]
        result[f"simulated_{name}_range"] = scores["accuracy_range"]
        result[f"agreement_{name}"] = scores["agreement"]
    result["offset_residual_rms_codes"] = round(float(np.sqrt(np.mean(
        (offsets - state.chain.offset_codes)[used] ** 2))), 4)
    result["gain_residual_rms"] = round(float(np.sqrt(np.mean(
        (gains / state.chain.gain - 1)[used] ** 2))), 5)
    return result


def run(seed: int, profile: str, workdir: Path) -> dict:
    out = workdir / f"demo-{profile}-{seed}"
    subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "demo", "--seed", "0",
                    "--board-seed", str(seed), "--emulator-profile", PROFILES[profile],
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    s = json.loads((out / "summary.json").read_text())
    return {"seed": seed, "profile": profile, "software": s["software_accuracy"],
            "hardware_as_trained": s["hardware_accuracy_before_finetune"],
            "agreement": s["agreement_before_finetune"], **simulate(out, profile)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--profiles", default="default,harsh")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        parser.error(f"unknown profile(s) {', '.join(unknown)}; choose from {', '.join(PROFILES)}")
    start, runs = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        for profile in profiles:
            for seed in (int(s) for s in args.seeds.split(",")):
                runs.append(r := run(seed, profile, Path(tmp)))
                print(f"{profile} board {seed}: board {100 * r['hardware_as_trained']:.0f} %, "
                      f"simulated with calibrated columns "
                      f"{100 * r['simulated_calibrated_columns']:.1f} %, with true columns "
                      f"{100 * r['simulated_true_columns']:.1f} %", file=sys.stderr, flush=True)
    summary = []
    for profile in profiles:
        group = [r for r in runs if r["profile"] == profile]
        gaps = {name: [round(100 * abs(r["hardware_as_trained"] - r[f"simulated_{name}"]), 6)
                       for r in group] for name in ("calibrated_columns", "true_columns")}
        summary.append({"profile": profile, "boards": len(group), **{
            f"within_1_point_{name}": sum(g <= 1 for g in gap) for name, gap in gaps.items()}, **{
            f"mean_abs_gap_points_{name}": round(float(np.mean(gap)), 2)
            for name, gap in gaps.items()}})
    print(json.dumps({"runs": runs, "summary": summary,
                      "wall_time_s": round(time.perf_counter() - start, 1)}, indent=1))


if __name__ == "__main__":
    main()
