"""The error budget of a programmed deployment: where the accuracy goes between software and board.

    budget = error_budget(board, dep, ckpt, features, labels, calibration=cal,
                          programmed=load_programmed(find_programmed(deploy_dir)),
                          stuck=defect_mask)
    budget["causes"], budget["dominant"], budget["unexplained_points"]

The conductances the board holds are read back (averaged, corrected by the calibration, the
low devices again on the smallest ADC range: `hil.inference.read_maps`). The
model then runs in software on maps and through a read-chain model, adding one non-ideality at a
time in a fixed order, and the accuracy each one costs is its part of the budget:

    software (quantized model, ideal devices)
    repair              the compiled targets themselves: kernels re-fitted around stuck devices
                        (compiler/repair.py) differ from the trained ones; 0 without repairs
    programming_error   the maps as programming verified them, stuck devices at their targets
    stuck_devices       the stuck devices at what they read
    drift               the maps as read now instead of as programmed
    quantization        row DACs and column ADCs at the deployment's TIA ranges (and the
                        loop's feedback deadband, which works through the DAC's rounding)
    column_errors       each column's TIA gain and offset (the calibration's) before the ADC,
                        corrected after it as the firmware does
    read_noise          the calibration's read noise (what programming takes), else the same
                        estimator's on the read-back (`calibration.relaxation.read_noise_rel`),
                        averaged over NOISE_DRAWS draws (one draw moves the logits by about as
                        much as one board run differs from the next)
    = simulated hardware, compared with the mean of `runs` measured runs on the board (its
      on-board loop; host mode on a board without one), each one draw of the board's noise:
      a mean of draws against a mean of runs.

The loop follows the compiled schedule (`compiler.executor.run_layer`) through the board's
read-chain model (`board.read_chain.ReadChainModel`, the emulated board's too), so each step is
the board's arithmetic with the other non-idealities off. Parts add up to software - simulated;
`unexplained_points` is what the measured run loses beyond that.

Beside the chain, `ideal_board` runs the targets themselves through the row DACs and column
ADCs: a board whose every device sits on its target, the best any board with these converters
can do. `hardware_agreement_with_ideal_board` is how often the measured board decides as that
one does: what the devices decide, apart from the converters' own flips.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from imssa_hw.board.read_chain import ReadChainModel
from imssa_hw.compiler import Executor
from imssa_hw.compiler.artifact import Deployment
from imssa_hw.compiler.executor import Vmm
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.errors import BadInput
from imssa_hw.files import read_npz
from imssa_hw.hil.mode import InferenceMode
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import Checkpoint

CAUSES = ("repair", "programming_error", "stuck_devices", "drift", "quantization", "column_errors",
          "read_noise")
"""The non-idealities in the order they are added."""
NOISE_DRAWS = 8
"""Simulated draws of read noise averaged in a step that has it."""
MEASURED_RUNS = 3
"""Measured runs on the board averaged by default: one run is one draw of its noise."""


def chain_vmm(chain: ReadChainModel, maps_siemens: np.ndarray, range_a: float,
              rng: np.random.Generator, tally: dict | None = None) -> Vmm:
    """A batched `Vmm` on `maps_siemens` (arrays, rows, cols) S through `chain` at full scale
    `range_a`, read noise drawn from `rng`, the column errors corrected after the ADC as the
    firmware does; `tally` counts the column samples the ADC saturated ("clipped") out of
    "samples"."""
    def vmm(array: int, v_rows: np.ndarray) -> np.ndarray:
        g = maps_siemens[array]
        v = chain.dac(v_rows)
        noise = rng.standard_normal(v.shape[:-1] + g.shape[1:]) if chain.read_noise_rel else None
        currents = chain.currents_a(v, g, noise)
        if chain.adc_bits is None:
            return currents
        scaled = chain.adc_input(currents, range_a, array)
        codes = chain.adc(scaled)
        if tally is not None:
            tally["clipped"] += int((codes != np.rint(scaled)).sum())
            tally["samples"] += codes.size
        return chain.corrected_a(codes, range_a, array)
    return vmm


def find_programmed(deploy_dir: str | Path) -> Path | None:
    """The maps of the deployment's latest run under DEPLOY/program (a refresh, else the
    programming run), None when there is none."""
    from imssa_hw.programming.outputs import ACHIEVED_NPZ

    folder = Path(deploy_dir)
    folder = folder.parent if folder.name == "deploy.json" else folder
    runs = [p for p in (folder / "program" / "refresh" / ACHIEVED_NPZ,
                        folder / "program" / ACHIEVED_NPZ) if p.is_file()]
    return runs[0] if runs else None


def load_programmed(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(achieved maps S, status) from a programming run's achieved.npz."""
    from imssa_hw.programming.strategy import STATUS_NAMES

    data = read_npz(path, "programmed maps")
    if "achieved_siemens" not in data or "status" not in data:
        raise BadInput(f"{path}: not the maps of a programming run (no achieved_siemens, status)")
    achieved, status = np.asarray(data["achieved_siemens"], float), np.asarray(data["status"], int)
    if achieved.shape != status.shape or status.min(initial=0) < 0 \
            or status.max(initial=0) >= len(STATUS_NAMES):
        raise BadInput(f"{path}: not the maps of a programming run")
    return achieved, status


def error_budget(board: BoardLike, dep: Deployment, ckpt: Checkpoint, features: np.ndarray,
                 labels: np.ndarray, calibration, programmed: tuple[np.ndarray, np.ndarray] | None,
                 stuck: np.ndarray | None = None, reads: int = 8, seed: int = 0,
                 runs: int = MEASURED_RUNS, progress: Callable[[int], None] | None = None) -> dict:
    """The budget as a JSON-ready dict (accuracies 0..1, losses in percentage points); the
    hardware's scores are the mean of `runs` measured runs. `progress` ticks
    len(CAUSES) + 2 + runs times."""
    if runs < 1:
        raise BadInput(f"runs must be >= 1, got {runs}")
    from imssa_hw.hil.inference import current_correction, read_maps, run_inference
    from imssa_hw.programming.strategy import STUCK

    dep.check_board(board.info)
    tick = progress or (lambda n: None)
    now_siemens, measured_noise = read_maps(board, dep, calibration, reads)
    noise_from_calibration = calibration is not None and calibration.read_noise_rel is not None
    noise_rel = (calibration.read_noise_rel if noise_from_calibration
                 else measured_noise or 0.0)
    tick(1)
    if programmed is not None:
        if programmed[0].shape != now_siemens.shape:
            raise BadInput("the programmed maps are for another board shape")
        was = np.where(np.isfinite(programmed[0]), programmed[0], now_siemens)
        stuck_mask = (programmed[1] == STUCK) | (stuck if stuck is not None else False)
    else:
        was = now_siemens
        stuck_mask = stuck if stuck is not None else np.zeros(now_siemens.shape, bool)
    stuck_mask = stuck_mask & dep.used
    healthy_was = np.where(stuck_mask, dep.targets_siemens, was)
    info = board.info
    ideal = ReadChainModel(info.spec.read_chain.v_read_max)
    converters = ReadChainModel.from_spec(info.spec.read_chain)
    gains, offsets = column_errors(calibration, info.adc_bits)
    columns = replace(converters, column_gain=gains, column_offset_codes=offsets)
    chains = {
        "repair": (dep.targets_siemens, ideal),
        "programming_error": (healthy_was, ideal),
        "stuck_devices": (was, ideal),
        "drift": (now_siemens, ideal),
        "quantization": (now_siemens, converters),
        "column_errors": (now_siemens, columns),
        "read_noise": (now_siemens, replace(columns, read_noise_rel=noise_rel)),
    }
    software = reference.forward(ckpt, features)
    rows = [{"step": "software", **_scores(software, software, labels)}]
    for k, (cause, (maps, chain)) in enumerate(chains.items()):
        scores, clipping = simulated_scores(dep, ckpt, features, software, labels, maps, chain,
                                            [seed, k])
        rows.append({"step": cause, **scores})
        tick(1)  # after the loop, `clipping` is the full chain's
    ideal_board = reference.forward(ckpt, features, _Simulated(
        dep, dep.targets_siemens, converters, seed))
    tick(1)
    correct = current_correction(calibration, board) if calibration is not None else None
    mode = InferenceMode.ONBOARD if board.capabilities.on_board_loop else InferenceMode.HOST
    measured, with_ideal = [], []
    for _ in range(runs):
        run = run_inference(board, dep, ckpt, features, labels, mode, correct)
        measured.append(_scores(run.hardware_logits, software, labels))
        with_ideal.append(float((run.hardware_pred == ideal_board.argmax(-1)).mean()))
        tick(1)
    hardware = _mean_scores(measured)
    causes = {}
    for before, after in zip(rows, rows[1:]):
        causes[after["step"]] = {
            "loss_points": round(100 * (before["accuracy"] - after["accuracy"]), 3),
            "disagreement_points": round(100 * (before["agreement"] - after["agreement"]), 3),
            "logit_error_increase": round(after["logit_rms_error"] - before["logit_rms_error"], 6)}
    # the sum of the reported (rounded) parts, so that the report's numbers add up exactly
    explained = round(sum(c["loss_points"] for c in causes.values()), 3)
    measured_loss = 100 * (rows[0]["accuracy"] - hardware["accuracy"])
    dominant = max(causes, key=lambda c: (causes[c]["loss_points"], causes[c]["disagreement_points"],
                                          causes[c]["logit_error_increase"]))
    drift_us = (now_siemens - was)[dep.used & ~stuck_mask] * 1e6
    return {
        "n_samples": int(len(labels)), "board_id": info.board_id, "measured_mode": mode,
        "software_accuracy": rows[0]["accuracy"], "simulated_accuracy": rows[-1]["accuracy"],
        "hardware_accuracy": hardware["accuracy"], "hardware_agreement": hardware["agreement"],
        "ideal_board": _scores(ideal_board, software, labels),
        "hardware_agreement_with_ideal_board": float(np.mean(with_ideal)),
        "measured_runs": runs, "hardware_accuracy_runs": [r["accuracy"] for r in measured],
        "measured_loss_points": round(measured_loss, 3), "explained_loss_points": explained,
        "unexplained_points": round(measured_loss - explained, 3),
        "causes": causes, "dominant": dominant, "steps": rows + [{"step": "hardware", **hardware}],
        "read_noise_rel": round(noise_rel, 5),
        "read_noise_from": "calibration" if noise_from_calibration else "read-back",
        "read_noise_draws": rows[-1]["draws"],
        "simulated_accuracy_range": rows[-1]["accuracy_range"],
        "stuck_devices": int(stuck_mask.sum()),
        "drift_rms_us": round(float(np.sqrt(np.mean(drift_us ** 2))), 4) if drift_us.size else 0.0,
        "programmed_maps": programmed is not None, "reads_per_device": reads,
        "adc_clipped_samples": clipping["clipped"],
        "adc_clipped_fraction": clipping["clipped"] / max(clipping["samples"], 1),
    }


def column_errors(calibration, adc_bits: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each column's TIA gain and offset in codes of an `adc_bits`-bit ADC (the same on every
    range), (arrays, cols) each, from the calibration; (None, None) without one."""
    if calibration is None:
        return None, None
    return (np.stack([calibration.vmm_correction(array)[0]
                      for array in range(calibration.arrays)]),
            calibration.offset_codes(adc_bits))


def simulated_scores(dep: Deployment, ckpt: Checkpoint, features: np.ndarray, software: np.ndarray,
                     labels: np.ndarray, maps_siemens: np.ndarray, chain: ReadChainModel,
                     key: list[int]) -> tuple[dict, dict]:
    """(scores, ADC clipping) of the model run on `maps_siemens` through `chain`: accuracy,
    agreement and logit rms error averaged over NOISE_DRAWS draws of its read noise (one run
    without noise), with the number of draws and the accuracy's range; the clipped and total
    column samples summed over the draws."""
    draws = NOISE_DRAWS if chain.read_noise_rel else 1
    runs, tally = [], {"clipped": 0, "samples": 0}
    for d in range(draws):
        simulated = _Simulated(dep, maps_siemens, chain, [*key, d])
        runs.append(_scores(reference.forward(ckpt, features, simulated), software, labels))
        for name in tally:
            tally[name] += simulated.tally[name]
    return {**_mean_scores(runs), "draws": draws}, tally


class _Simulated:
    """A `reference.Recurrence` running the schedule on maps through a `ReadChainModel`."""

    def __init__(self, dep: Deployment, maps_siemens: np.ndarray, chain: ReadChainModel,
                 seed: int | list[int]):
        self.dep, self.maps, self.chain = dep, maps_siemens, chain
        self.rng = np.random.default_rng(seed)
        self.tally = {"clipped": 0, "samples": 0}

    def __call__(self, layer: int, u: np.ndarray) -> np.ndarray:
        schedule = self.dep.schedule
        vmm = chain_vmm(self.chain, self.maps, schedule.layers[layer].vmm_range_a, self.rng,
                        self.tally)
        return Executor(schedule, vmm, dac_rounds=self.chain.dac_bits is not None)(layer, u)


def _mean_scores(runs: list[dict]) -> dict:
    """The mean of each score over runs, with the accuracy's range."""
    accuracies = [r["accuracy"] for r in runs]
    return {**{name: float(np.mean([r[name] for r in runs])) for name in runs[0]},
            "accuracy_range": [min(accuracies), max(accuracies)]}


def _scores(logits: np.ndarray, software: np.ndarray, labels: np.ndarray) -> dict:
    return {"accuracy": float((logits.argmax(-1) == labels).mean()),
            "agreement": float((logits.argmax(-1) == software.argmax(-1)).mean()),
            "logit_rms_error": float(np.sqrt(np.mean((logits - software) ** 2)))}


def plot_waterfall(budget: dict, path: str | Path) -> Path:
    """A PNG waterfall from software accuracy to the simulated and measured hardware."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), dpi=110)
    ax = fig.add_subplot()
    level = 100 * budget["software_accuracy"]
    names, bottoms, heights, colors = ["software"], [0.0], [level], ["tab:blue"]
    for cause in CAUSES:
        loss = budget["causes"][cause]["loss_points"]
        names.append(cause.replace("_", "\n"))
        bottoms.append(level - max(loss, 0.0))
        heights.append(abs(loss))
        colors.append("tab:red" if loss > 0 else "tab:green")
        level -= loss
    names += ["simulated", "measured"]
    bottoms += [0.0, 0.0]
    heights += [100 * budget["simulated_accuracy"], 100 * budget["hardware_accuracy"]]
    colors += ["tab:gray", "black"]
    ax.bar(range(len(names)), heights, bottom=bottoms, color=colors)
    for x, (b, h) in enumerate(zip(bottoms, heights)):
        ax.text(x, b + h + 0.3, f"{h:.1f}" if x in (0, len(names) - 2, len(names) - 1)
                else f"-{h:.1f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_ylabel("accuracy, %")
    low = min(100 * budget["hardware_accuracy"], 100 * budget["simulated_accuracy"], level)
    ax.set_ylim(max(0.0, low - 10), 101)
    ax.set_title(f"error budget, {budget['board_id']}: {budget['measured_loss_points']:.1f} points "
                 f"lost, {budget['unexplained_points']:+.1f} unexplained", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
