"""State gains, side by side: measured scales, one gain a layer (0.15.0), one a kernel (0.16.0).

For each shipped model (zero-one on board-default, digits on board-multi) the board's loop is
simulated in software (the torch twin of the read chain, `training.hardware_aware`) three
times: with the scales measured on the training set (every state gain 1, what 0.14.0 stored);
with one gain a layer, fitted as 0.15.0 did (`layer_gains` below, kept here as the baseline:
the gain of (1, 1.25, 1.5, 1.75, 2) with the smallest rms logit error against the ideal model
on the training data, layer by layer); and with the checkpoint's stored scales (0.16.0: one
gain a kernel, `hardware_aware.fit_state_gains`). All against the software model on the
model's test set (FSDD speaker 03: 100 zero/one recordings, 500 digit recordings; never used
to fit):

- converters only (ideal conductances, the board's row DACs and column ADCs): agreement and rms
  logit error;
- `--draws` simulated boards: the same plus, drawn per board, a conductance error per device
  (`--g-sigma-us`), read noise (`--read-noise`) and each column pair's residual ADC offset, as
  hardware-aware training draws them. Not the emulator: a quick check of the direction, the
  emulated boards of bench/fidelity.py are the measurement;
- `--boards 1,2,3`: for the zero-one model, the layer and the kernel gains deployed on the same
  emulated boards (`emu://?seed=S`, emulator-default, in this process: calibrate, compile,
  program, infer with the on-board loop), one after the other on each board seed: the A/B that
  bench/fidelity.py's separate runs (whose programming depends on timing) cannot give.

Prints JSON {"models": [{"model", "board_profile", "gains": {"layer", "kernel"}, "measured":
{...}, "layer": {...}, "kernel": {...}}], "boards": [{"seed", "layer": {...}, "kernel":
{...}}]}.

    python bench/state_gains.py [--models zero-one,digits] [--draws 12] [--g-sigma-us 1.0]
                                [--read-noise 0.01] [--boards 1,2,3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace

import numpy as np
import torch

from imssa_hw.board import load_board_profile
from imssa_hw.board.profile import DeviceErrors
from imssa_hw.data import DataSpec, load_data
from imssa_hw.model.loop_scales import DEFAULT_HEADROOM, loop_scales, stored_scales
from imssa_hw.training import hardware_aware
from imssa_hw.training.classifier import model_from_checkpoint
from imssa_hw.workflows.model_cache import shipped_checkpoint, shipped_models


def compare(logits: np.ndarray, software: np.ndarray) -> dict:
    """Agreement of the decisions and rms logit error against software."""
    return {"agreement": float((logits.argmax(-1) == software.argmax(-1)).mean()),
            "rms_logit_error": round(float(np.sqrt(np.mean((logits - software) ** 2))), 4)}


def simulated_boards(model, board, scales, x: torch.Tensor, software: np.ndarray, draws: int,
                     g_sigma_siemens: float, read_noise: float) -> dict:
    """`draws` boards with drawn device errors: the mean and spread of their comparisons."""
    noisy = replace(board, errors=DeviceErrors(g_sigma_siemens=g_sigma_siemens,
                                               read_noise_rel=read_noise))
    runs = []
    for draw in range(draws):
        torch.manual_seed(draw)
        hardware_aware.install(model, noisy, scales)
        for block in model.blocks:  # the loops draw their errors in training mode
            block.ssm.train()
        runs.append(compare(model(x).numpy(), software))
        for block in model.blocks:
            block.ssm.eval()
    agreement = [r["agreement"] for r in runs]
    return {"agreement_mean": round(float(np.mean(agreement)), 4),
            "agreement_min": min(agreement),
            "boards_at_98_percent": sum(a >= 0.98 for a in agreement),
            "rms_logit_error_mean": round(float(np.mean([r["rms_logit_error"] for r in runs])), 4)}


LAYER_GAINS = (1.0, 1.25, 1.5, 1.75, 2.0)
"""0.15.0's grid of layer gains."""


def layer_gains(model, features: np.ndarray, board, measured: list) -> list:
    """0.15.0's fit, the baseline: each layer's measured scales times the gain of LAYER_GAINS
    whose loop (converters only) gives the smallest rms logit error against the ideal model on
    `features` (at most 2,048, drawn as the fit draws them), layer by layer; ties to the
    smaller gain."""
    if len(features) > hardware_aware.FIT_SEQUENCES:
        pick = np.random.default_rng(0).choice(len(features), hardware_aware.FIT_SEQUENCES,
                                               replace=False)
        features = features[np.sort(pick)]
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def logits() -> torch.Tensor:
        return torch.cat([model(x[i:i + 512]) for i in range(0, len(x), 512)])
    with torch.no_grad():
        hardware_aware.install(model, board, None)
        ideal = logits()
        chosen = list(measured)
        for layer, scales in enumerate(measured):
            error = {}
            for gain in LAYER_GAINS:
                chosen[layer] = scales.times(gain)
                hardware_aware.install(model, board, chosen)
                error[gain] = float((logits() - ideal).square().mean())
            chosen[layer] = scales.times(min(LAYER_GAINS, key=lambda g: (error[g], g)))
        hardware_aware.install(model, board, None)
    return chosen


def variants(name: str) -> tuple:
    """The shipped model `name`: its checkpoint, board, data, model and the three scales."""
    entry = shipped_models()[name]
    ckpt = shipped_checkpoint(name)
    board = load_board_profile(entry["board_profile"])
    data = load_data(DataSpec.of_checkpoint(ckpt.meta))
    model = model_from_checkpoint(ckpt)
    measured = loop_scales(ckpt, data.x_train, board, DEFAULT_HEADROOM)
    scales = {"measured": measured,
              "layer": layer_gains(model, data.x_train, board, measured),
              "kernel": stored_scales(ckpt, board, DEFAULT_HEADROOM)}
    return ckpt, board, data, model, scales


def one_model(name: str, args: argparse.Namespace) -> dict:
    ckpt, board, data, model, scales = variants(name)
    x = torch.from_numpy(data.x_test)
    out = {"model": name, "board_profile": board.name, "n_test": int(len(x)),
           "gains": {label: [s.state_gain.tolist() for s in scales[label]]
                     for label in ("layer", "kernel")}}
    with torch.no_grad():
        software = model(x).numpy()
        for label, chosen in scales.items():
            hardware_aware.install(model, board, chosen)
            out[label] = {"converters": compare(model(x).numpy(), software),
                          "loop_accuracy": float((model(x).numpy().argmax(-1)
                                                  == data.y_test).mean())}
            out[label]["boards"] = simulated_boards(model, board, chosen, x, software, args.draws,
                                                    args.g_sigma_us * 1e-6, args.read_noise)
            print(f"{name} {label}: {out[label]}", file=sys.stderr, flush=True)
    return out


def with_scales(ckpt, scales: list, path: str):
    """`ckpt` saved to `path` with `scales` as its stored loop scales, loaded back."""
    from imssa_hw.model.checkpoint import load_checkpoint, write_checkpoint

    meta = json.loads(json.dumps(ckpt.meta))
    meta["loop_scales"]["layers"] = [s.to_dict() for s in scales]
    write_checkpoint(path, ckpt.tensors, ckpt.config, meta)
    return load_checkpoint(path)


def on_boards(seeds: list[int]) -> list[dict]:
    """The shipped zero-one model with one gain a layer and with one a kernel on the same
    emulated boards: hardware accuracy, agreement and rms logit error against software."""
    import imssa_hw as hw

    if not seeds:
        return []
    kernel, _, _, _, scales = variants("zero-one")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        layer = with_scales(kernel, scales["layer"], f"{tmp}/layer.pt")
        for seed in seeds:
            row = {"seed": seed}
            for label, model in (("layer", layer), ("kernel", kernel)):
                with hw.open_board(f"emu://?seed={seed}") as board:
                    run = hw.calibrate(board)
                    dep = hw.compile(model, "board-default", calibration=run)
                    hw.program(board, dep, calibration=run)
                    result = hw.infer(board, dep, model, calibration=run)
                report = result.report(2)
                row[label] = {"hardware_accuracy": report["hardware_accuracy"],
                              "agreement": report["agreement"],
                              "rms_logit_error": round(float(report["rms_logit_error"]), 4)}
            print(f"board {seed}: {row}", file=sys.stderr, flush=True)
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="zero-one,digits")
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--g-sigma-us", type=float, default=1.0)
    parser.add_argument("--read-noise", type=float, default=0.01)
    parser.add_argument("--boards", default="", help="emulated board seeds for the zero-one A/B")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = [one_model(m, args) for m in args.models.split(",") if m]
    boards = on_boards([int(s) for s in args.boards.split(",") if s])
    print(json.dumps({"models": models, "draws": args.draws, "g_sigma_us": args.g_sigma_us,
                      "read_noise": args.read_noise, "boards": boards}, indent=1))


if __name__ == "__main__":
    main()
