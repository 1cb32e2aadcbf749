"""How hard is each synthetic task? Linear baselines on the loaded features; prints JSON.

    python bench/data_difficulty.py --tasks zero-one,digits --seeds 0,1
    python bench/data_difficulty.py --tasks zero-one --set snr_db=-5,5 --set reverb_prob=0.3

Baselines (softmax regression, L2, scipy L-BFGS, no torch):
  mean:  the time-average of each feature (F inputs); the calibration number (docs/data.md).
  seg4:  averages over 4 equal time segments (4F inputs); a rough stand-in for a sequence model.
Generation runs in a fresh temporary cache unless --cache-dir is given, so `build_s` (wall)
and `build_cpu_s` (this process's CPU) are the time to synthesize and compute features.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time

import numpy as np
from scipy.optimize import minimize

from imssa_hw.data import TASK_DEFS, load_task


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-3) -> np.ndarray:
    """Weights (d+1, C) of an L2-regularized softmax regression."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    onehot = np.eye(n_classes)[y]

    def loss(w_flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = w_flat.reshape(xb.shape[1], n_classes)
        z = xb @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        nll = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        grad = xb.T @ (p - onehot) / len(y)
        reg = w[:-1]
        grad[:-1] += l2 * reg
        return nll + 0.5 * l2 * float(np.sum(reg ** 2)), grad.ravel()

    w0 = np.zeros(xb.shape[1] * n_classes)
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x.reshape(xb.shape[1], n_classes)


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.hstack([x, np.ones((len(x), 1))]) @ w).argmax(axis=1) == y))


def pooled(x: np.ndarray, segments: int) -> np.ndarray:
    return np.concatenate([part.mean(axis=1) for part in np.array_split(x, segments, axis=1)], axis=1)


def baseline(data, segments: int) -> dict[str, float]:
    tr, te = pooled(data.x_train, segments), pooled(data.x_test, segments)
    mu, sd = tr.mean(axis=0), tr.std(axis=0) + 1e-6
    tr, te = (tr - mu) / sd, (te - mu) / sd
    w = fit_softmax(tr, data.y_train, data.n_classes)
    return {"train": round(accuracy(w, tr, data.y_train), 4), "test": round(accuracy(w, te, data.y_test), 4)}


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        parts = [v for v in value.split(",") if v]
        if key == "noise_kinds":
            out[key] = tuple(parts)
        elif len(parts) == 2:
            out[key] = (float(parts[0]), float(parts[1]))
        else:
            out[key] = float(parts[0]) if "." in parts[0] or key.endswith(("prob", "_s")) else int(parts[0])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="zero-one,digits")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--n-train", type=int, default=None, help="per class (default: the task's)")
    ap.add_argument("--n-test", type=int, default=None, help="per class (default: the task's)")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                    help="override a SynthSpec field, e.g. snr_db=-5,5 or reverb_prob=0.3")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    overrides = parse_set(args.set)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            spec = dataclasses.replace(TASK_DEFS[task].synth, **overrides)
            for seed in (int(s) for s in args.seeds.split(",")):
                start, cpu = time.perf_counter(), time.process_time()
                data = load_task(task, seed=seed, n_train_per_class=args.n_train,
                                 n_test_per_class=args.n_test, synth=spec,
                                 cache_dir=args.cache_dir or tmp)
                build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
                results.append({
                    "task": task, "seed": seed, "n_train": len(data.y_train), "n_test": len(data.y_test),
                    "shape": list(data.x_train.shape[1:]), "build_s": round(build_s, 2),
                    "build_cpu_s": round(build_cpu_s, 2),
                    "cache": data.info["cache"]["status"],
                    "linear_mean": baseline(data, 1), "linear_seg4": baseline(data, 4),
                    "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                })
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
